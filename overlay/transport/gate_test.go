package transport

import (
	"testing"
	"testing/synctest"
	"time"
)

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// waiter runs g.Wait in a goroutine of the bubble; the channel is closed
// when Wait returns.
func waiter(g *Gate) <-chan struct{} {
	returned := make(chan struct{})
	go func() {
		g.Wait(stoppedTimer())
		close(returned)
	}()
	return returned
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// The Gate's timeouts run on synctest's fake clock: synctest.Wait returns
// once every goroutine of the bubble is blocked, so "Wait has not returned"
// means it is blocked for good, not that it was slow.

func TestGateBlocksUntilDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := NewGate(4)
		start := time.Now()
		g.Wait(stoppedTimer()) // empty: returns at once
		g.Add(4)
		if got := g.InFlight(); got != 4 {
			t.Fatalf("InFlight = %d, want 4", got)
		}
		returned := waiter(g)
		synctest.Wait()
		if isClosed(returned) {
			t.Fatal("Wait returned while the Gate was full")
		}
		// Packets keep leaving, others keep entering, and the Gate stays
		// full for several stall periods: Wait must neither return nor
		// give up, since this is progress.
		for i := range 6 {
			time.Sleep(gateStall / 2)
			g.Add(1)
			g.Done(1)
			synctest.Wait()
			if isClosed(returned) {
				t.Fatalf("Wait returned while the Gate was full, after %v", time.Since(start))
			}
			if g.Resets() != 0 {
				t.Fatalf("round %d: Resets = %d although packets kept leaving", i, g.Resets())
			}
		}
		waited := time.Now()
		g.Done(2)
		synctest.Wait()
		if !isClosed(returned) {
			t.Fatal("Wait did not return after Done made room")
		}
		if d := time.Since(waited); d != 0 {
			t.Fatalf("Wait returned %v after Done made room, want at once", d)
		}
		if g.Resets() != 0 || g.InFlight() != 2 {
			t.Fatalf("Resets %d InFlight %d, want 0 and 2", g.Resets(), g.InFlight())
		}
	})
}

// TestGateWakesAllWaiters: a Bind waits on its inbound Gate from one
// goroutine per socket; room made by Done must release all of them, not
// one now and the others a stall period later.
func TestGateWakesAllWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := NewGate(4)
		g.Add(4)
		ws := []<-chan struct{}{waiter(g), waiter(g), waiter(g)}
		synctest.Wait()
		for i, w := range ws {
			if isClosed(w) {
				t.Fatalf("waiter %d returned while the Gate was full", i)
			}
		}
		start := time.Now()
		g.Done(3)
		synctest.Wait()
		for i, w := range ws {
			if !isClosed(w) {
				t.Fatalf("waiter %d still blocked after Done made room", i)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("waiters released after %v, want at once", d)
		}
		if g.Resets() != 0 {
			t.Fatalf("Resets = %d, want 0", g.Resets())
		}
	})
}

func TestGateForgetsLostPackets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := NewGate(2)
		g.Add(5) // never Done: dropped inside WireGuard
		start := time.Now()
		g.Wait(stoppedTimer())
		if d := time.Since(start); d != gateStall {
			t.Fatalf("Wait took %v, want %v", d, gateStall)
		}
		if g.InFlight() != 0 || g.Resets() != 1 {
			t.Fatalf("after stall: InFlight %d Resets %d, want 0 and 1", g.InFlight(), g.Resets())
		}
		// Late Dones of forgotten packets must not open the Gate beyond
		// its limit.
		g.Done(5)
		if g.InFlight() != 0 {
			t.Fatalf("InFlight = %d after late Done, want 0", g.InFlight())
		}
		g.Add(2)
		if g.InFlight() != 2 {
			t.Fatalf("InFlight = %d, want 2", g.InFlight())
		}
		returned := waiter(g)
		synctest.Wait()
		if isClosed(returned) {
			t.Fatal("Wait returned at the limit after late Dones")
		}
		g.Done(1)
		synctest.Wait()
		if !isClosed(returned) {
			t.Fatal("Wait did not return after Done made room")
		}
	})
}

func TestGateUnlimited(t *testing.T) {
	var nilGate *Gate
	for _, g := range []*Gate{nilGate, NewGate(0), NewGate(-1), {}} {
		g.Add(1000)
		g.Wait(stoppedTimer()) // must not block
		g.Done(1000)
	}
}

func TestGateDoesNotAllocate(t *testing.T) {
	g := NewGate(64)
	tm := stoppedTimer()
	allocs := testing.AllocsPerRun(1000, func() {
		g.Wait(tm)
		g.Add(32)
		g.Done(32)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch, want 0", allocs)
	}
}
