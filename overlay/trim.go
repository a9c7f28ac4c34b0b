package overlay

import (
	"context"
	"runtime"
	"runtime/debug"
	"time"
)

const (
	// DefaultMemoryTrim is Config.MemoryTrim's zero value.
	DefaultMemoryTrim = 5 * time.Second
	// trimBurst is the number of WireGuard packets in one MemoryTrim
	// period, both directions, above which the period counts as a burst:
	// 2000 a second at the default. Pings and keepalives stay far below.
	trimBurst = 10000
)

// trimmer decides when a burst of traffic has ended.
type trimmer struct {
	last uint64 // packet count at the previous tick
	busy bool   // a burst is under way or ended at the previous tick
}

// tick takes the packet count now and reports whether the period just
// ended was the first quiet one after a burst.
func (t *trimmer) tick(packets uint64) bool {
	d := packets - t.last
	t.last = packets
	if d >= trimBurst {
		t.busy = true
		return false
	}
	ended := t.busy
	t.busy = false
	return ended
}

// trimMemory returns the memory of a burst to the operating system once the
// overlay is quiet again, until ctx is done. A burst leaves wireguard-go's
// sync.Pools full of 64 KiB packet buffers, as many as were in flight at
// its peak, and the data path allocates too little for the GC to run and
// empty them: two collections (the first moves pooled buffers to the
// victim cache, the second frees them) and a scavenge give the pages back.
func (e *Engine) trimMemory(ctx context.Context, every time.Duration) {
	tk := time.NewTicker(every)
	defer tk.Stop()
	var t trimmer
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		s := e.bind.Stats()
		if t.tick(s.WireGuardPacketsIn + s.WireGuardPacketsOut) {
			runtime.GC()
			debug.FreeOSMemory()
			e.log.Debug("memory returned after a burst")
		}
	}
}
