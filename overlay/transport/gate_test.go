package transport

import (
	"testing"
	"time"
)

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

func TestGateBlocksUntilDone(t *testing.T) {
	g := NewGate(4)
	tm := stoppedTimer()
	g.Wait(tm) // empty: returns at once
	g.Add(4)
	if got := g.InFlight(); got != 4 {
		t.Fatalf("InFlight = %d, want 4", got)
	}
	returned := make(chan struct{})
	go func() {
		g.Wait(stoppedTimer())
		close(returned)
	}()
	// Keep making progress without freeing room: Wait must not give up.
	for range 3 {
		select {
		case <-returned:
			t.Fatal("Wait returned while the Gate was full")
		case <-time.After(gateStall / 2):
		}
		g.Done(1)
		g.Add(1)
	}
	g.Done(2)
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after Done made room")
	}
	if g.Resets() != 0 {
		t.Fatalf("Resets = %d, want 0", g.Resets())
	}
}

func TestGateForgetsLostPackets(t *testing.T) {
	g := NewGate(2)
	g.Add(5) // never Done: dropped inside WireGuard
	start := time.Now()
	g.Wait(stoppedTimer())
	if d := time.Since(start); d < gateStall || d > 5*time.Second {
		t.Fatalf("Wait took %v, want about %v", d, gateStall)
	}
	if g.InFlight() != 0 || g.Resets() != 1 {
		t.Fatalf("after stall: InFlight %d Resets %d, want 0 and 1", g.InFlight(), g.Resets())
	}
	// Late Dones of forgotten packets must not open the Gate beyond its
	// limit.
	g.Done(5)
	if g.InFlight() != 0 {
		t.Fatalf("InFlight = %d after late Done, want 0", g.InFlight())
	}
	g.Add(2)
	if g.InFlight() != 2 {
		t.Fatalf("InFlight = %d, want 2", g.InFlight())
	}
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
