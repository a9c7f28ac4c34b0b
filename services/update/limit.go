package update

import (
	"context"
	"sync"
	"time"
)

// rateLimiter spaces transfers to a rate: each caller reserves the time its
// bytes take at the rate, after the previous reservation, and sleeps until
// its slot ends. Up to burst of unused time is kept. A nil
// rateLimiter does not limit.
type rateLimiter struct {
	rate float64 // bytes per second

	mu   sync.Mutex
	next time.Time // end of the last reservation
}

// burst is the unused time a rateLimiter keeps.
const burst = 50 * time.Millisecond

func newRateLimiter(bytesPerSecond int64) *rateLimiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	return &rateLimiter{rate: float64(bytesPerSecond)}
}

// wait blocks until n bytes fit under the rate, or ctx is done.
func (l *rateLimiter) wait(ctx context.Context, n int) error {
	if l == nil {
		return nil
	}
	now := time.Now()
	l.mu.Lock()
	start := l.next
	if floor := now.Add(-burst); start.Before(floor) {
		start = floor
	}
	l.next = start.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	until := l.next
	l.mu.Unlock()
	d := until.Sub(now)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
