package pktbuf

import (
	"bytes"
	"slices"
	"testing"
)

func TestBatchHandsOutFilledSlotsInOrder(t *testing.T) {
	b := New(8, MaxSlot)
	if len(b.Bufs) != 8 || len(b.Sizes) != 8 {
		t.Fatalf("got %d slots and %d sizes, want 8", len(b.Bufs), len(b.Sizes))
	}
	for i, s := range b.Bufs {
		if len(s) != MaxSlot || cap(s) != MaxSlot {
			t.Fatalf("slot %d: len %d cap %d, want %d", i, len(s), cap(s), MaxSlot)
		}
	}
	// A read fills 5 slots; slot 2 was consumed (size 0).
	for i := range 5 {
		b.Sizes[i] = copy(b.Bufs[i], bytes.Repeat([]byte{byte(i)}, 100+i))
	}
	b.Sizes[2] = 0
	b.Filled(5)
	var got []int
	for b.Pending() {
		i, ok := b.Next()
		if !ok {
			t.Fatal("Pending but Next found nothing")
		}
		if b.Bufs[i][0] != byte(i) || b.Sizes[i] != 100+i {
			t.Fatalf("slot %d holds %d bytes of %d", i, b.Sizes[i], b.Bufs[i][0])
		}
		got = append(got, i)
	}
	if want := []int{0, 1, 3, 4}; !slices.Equal(got, want) {
		t.Fatalf("slots %v, want %v", got, want)
	}
	if _, ok := b.Next(); ok {
		t.Fatal("Next after the last slot")
	}
	// The last slot is writable to its end.
	last := b.Bufs[7]
	last[len(last)-1] = 1
}

func TestBatchDoesNotAllocate(t *testing.T) {
	b := New(128, MaxSlot)
	for i := range b.Sizes {
		b.Sizes[i] = 1
	}
	allocs := testing.AllocsPerRun(100, func() {
		b.Filled(128)
		for {
			if _, ok := b.Next(); !ok {
				break
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch, want 0", allocs)
	}
}
