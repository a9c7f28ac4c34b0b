package proxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// bucket is a token bucket in debt form: take always succeeds and returns
// how long the caller must wait for the bucket to be out of debt. So a
// transfer is charged after the fact, with any read or write size, and
// still averages the rate.
type bucket struct {
	rate  float64 // tokens (bytes) per second
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newBucket(rate, burst int64, now time.Time) *bucket {
	if rate <= 0 {
		return nil
	}
	return &bucket{rate: float64(rate), burst: float64(burst), tokens: float64(burst), last: now}
}

// take removes n tokens at now and returns the wait until the balance is
// back at zero (0 when it is not negative).
func (b *bucket) take(now time.Time, n int) time.Duration {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(b.burst, b.tokens+el.Seconds()*b.rate)
		b.last = now
	}
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// direction of a transfer, from the client's point of view.
type direction int

const (
	up   direction = iota // client to destination
	down                  // destination to client
)

// user is the fair-use state and the counters of one user (one credential
// user name of one box; "" without authentication).
type user struct {
	name, box string // immutable

	conns    atomic.Int32 // client connections bound to the user
	requests atomic.Uint64
	bytes    [2]atomic.Uint64 // by direction
	lastSeen atomic.Int64     // Unix seconds of the last binding or release

	buckets [2]*bucket // by direction; nil without UserRate

	qmu  sync.Mutex
	day  int64 // days since the epoch, in the local zone
	used int64 // bytes relayed on day
}

// dayOf returns the calendar day of t in t's zone, as days since the epoch.
func dayOf(t time.Time) int64 {
	_, off := t.Zone()
	s := t.Unix() + int64(off)
	if s < 0 {
		return (s+1)/86400 - 1
	}
	return s / 86400
}

// quotaUsed returns the bytes relayed today.
func (u *user) quotaUsed(now time.Time) int64 {
	u.qmu.Lock()
	defer u.qmu.Unlock()
	if u.day != dayOf(now) {
		return 0
	}
	return u.used
}

// account charges n bytes relayed in direction d to u (and to the overall
// cap) and returns how long the transfer must pause to keep to the rates,
// or ErrQuotaExceeded.
func (p *Proxy) account(u *user, d direction, n int) (time.Duration, error) {
	if n <= 0 {
		return 0, nil
	}
	u.bytes[d].Add(uint64(n))
	p.bytes[d].Add(uint64(n))
	if !p.limited {
		return 0, nil
	}
	now := p.cfg.Now()
	if q := p.cfg.UserDailyQuota; q > 0 {
		u.qmu.Lock()
		if day := dayOf(now); u.day != day {
			u.day, u.used = day, 0
		}
		u.used += int64(n)
		over := u.used > q
		u.qmu.Unlock()
		if over {
			p.quotaExceeded.Add(1)
			return 0, ErrQuotaExceeded
		}
	}
	return max(u.buckets[d].take(now, n), p.total[d].take(now, n)), nil
}

// overQuota reports whether u has used up today's quota.
func (p *Proxy) overQuota(u *user) bool {
	q := p.cfg.UserDailyQuota
	return q > 0 && u.quotaUsed(p.cfg.Now()) >= q
}

// pause sleeps for d, or until done is closed. It reports whether it slept
// the whole time.
func pause(d time.Duration, done <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

// userFor returns the state of the user name of box, creating it.
func (p *Proxy) userFor(name, box string) *user {
	key := box + "\x00" + name
	p.usersMu.Lock()
	defer p.usersMu.Unlock()
	if u, ok := p.users[key]; ok {
		return u
	}
	now := p.cfg.Now()
	u := &user{name: name, box: box}
	u.buckets[up] = newBucket(p.cfg.UserRate, p.cfg.UserBurst, now)
	u.buckets[down] = newBucket(p.cfg.UserRate, p.cfg.UserBurst, now)
	u.lastSeen.Store(now.Unix())
	p.users[key] = u
	return u
}

// pruneUsers forgets users without connections that have not been seen for
// a day (their quota day is over, and their counters go with them).
func (p *Proxy) pruneUsers() {
	cutoff := p.cfg.Now().Add(-25 * time.Hour).Unix()
	p.usersMu.Lock()
	defer p.usersMu.Unlock()
	for k, u := range p.users {
		if u.conns.Load() == 0 && u.lastSeen.Load() < cutoff {
			delete(p.users, k)
		}
	}
}
