// Package pktbuf holds a batch of packet slots in memory that costs only
// what is written to it, and hands a large batch out in smaller ones.
//
// wireguard-go sizes its batches by the BatchSize of its TUN and Bind, and
// gives every packet of a batch a 64 KiB buffer for its whole life: batches
// of 128 pin 8 MiB per reading goroutine. The overlay reports a smaller
// batch to wireguard-go and reads the large batches that UDP GRO and TUN GSO
// produce into a Batch instead, copying packets out a few at a time.
package pktbuf

import "runtime"

// MaxSlot is a slot for the largest datagram or GSO/GRO batch: 64 KiB,
// page aligned.
const MaxSlot = 1 << 16

// Batch is a set of equal slots that a batched read fills, and a queue of
// the filled ones. The slots are mapped from the operating system where it
// can (see alloc): pages become resident only when a packet is written to
// them, so slots sized for the largest datagram cost a page or two each.
// A Batch is used by one goroutine at a time.
type Batch struct {
	// Bufs are the slots, each SlotSize long; Sizes are what a read put in
	// them.
	Bufs  [][]byte
	Sizes []int

	ready []int // slots filled and not yet taken, in order
	next  int   // index into ready of the next slot to take
}

// New returns a Batch of n slots of size bytes.
func New(n, size int) *Batch {
	mem := alloc(n * size)
	b := &Batch{Bufs: make([][]byte, n), Sizes: make([]int, n), ready: make([]int, 0, n)}
	for i := range b.Bufs {
		b.Bufs[i] = mem[i*size : (i+1)*size : (i+1)*size]
	}
	runtime.AddCleanup(b, free, mem)
	return b
}

// Filled queues the slots among the first n with a nonzero size, in order,
// replacing what was queued.
func (b *Batch) Filled(n int) {
	b.ready, b.next = b.ready[:0], 0
	for i, s := range b.Sizes[:n] {
		if s > 0 {
			b.ready = append(b.ready, i)
		}
	}
}

// Next takes the next filled slot; ok is false when none is left.
func (b *Batch) Next() (slot int, ok bool) {
	if b.next == len(b.ready) {
		return 0, false
	}
	slot = b.ready[b.next]
	b.next++
	return slot, true
}

// Pending reports whether filled slots are left to take.
func (b *Batch) Pending() bool { return b.next < len(b.ready) }
