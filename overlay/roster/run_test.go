package roster

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// pair returns, inside a synctest bubble, a founder roster A that knows an
// ordinary member B, and B. Both use the bubble's clock.
func pair(t *testing.T, cfg Config) (a, b *Roster) {
	f := newFixture(t)
	now := time.Now()
	keyA, keyB := nodeKey(t, 0xa), nodeKey(t, 0xb)
	cfgA := cfg
	cfgA.Self, cfgA.RootKey, cfgA.Now = f.founder(keyA, now), f.root, time.Now
	a = f.newRoster(t, cfgA)
	b = f.newRoster(t, Config{Self: f.member("b", keyB, now, 0), Now: time.Now})
	sb, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(sb); err != nil {
		t.Fatal(err)
	}
	if len(a.Peers()) != 1 {
		t.Fatalf("A has %d peers, want 1", len(a.Peers()))
	}
	return a, b
}

func TestRunRounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := pair(t, Config{Interval: 10 * time.Second})
		var fetches atomic.Int64
		fetch := func(ctx context.Context, p Peer) (*Snapshot, error) {
			fetches.Add(1)
			return b.Snapshot()
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx, fetch) }()

		synctest.Wait()
		if got := fetches.Load(); got != 1 {
			t.Errorf("after start: %d fetches, want 1 (the first round runs at once)", got)
		}
		time.Sleep(100 * time.Second)
		synctest.Wait()
		// Rounds 7.5 to 12.5 s apart: 1 + 8 to 1 + 13 in 100 s.
		if got := fetches.Load(); got < 9 || got > 14 {
			t.Errorf("after 100 s: %d fetches, want 9 to 14", got)
		}
		if err := a.Run(ctx, fetch); !errors.Is(err, ErrRunning) {
			t.Errorf("second Run = %v, want ErrRunning", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		st := a.Stats()
		if st.SnapshotsFetched != uint64(fetches.Load()) || st.FetchesFailed != 0 {
			t.Errorf("fetched %d, failed %d; want %d, 0", st.SnapshotsFetched, st.FetchesFailed, fetches.Load())
		}
	})
}

func TestRunStopsFetches(t *testing.T) {
	// A fetch that hangs until its context ends: each one is cut off
	// after FetchTimeout and counted; when Run returns, no fetch is still
	// running. synctest.Test also fails if Run leaves a goroutine behind.
	synctest.Test(t, func(t *testing.T) {
		// Rounds start at 0 s and 7.5 to 12.5 s after the previous one ends;
		// fetches are cut off after 20 s. So one fetch runs from 0 to 20 s,
		// none from 20 to 27.5 s, and the next one at least from 32.5 to
		// 47.5 s, whatever the jitter.
		a, _ := pair(t, Config{Interval: 10 * time.Second, FetchTimeout: 20 * time.Second})
		var running atomic.Int64
		fetch := func(ctx context.Context, p Peer) (*Snapshot, error) {
			running.Add(1)
			defer running.Add(-1)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx, fetch) }()

		check := func(at time.Duration, wantRunning int64, wantFailed uint64) {
			t.Helper()
			synctest.Wait()
			if r, f := running.Load(), a.Stats().FetchesFailed; r != wantRunning || f != wantFailed {
				t.Fatalf("at %v: %d fetches running, %d failed; want %d, %d", at, r, f, wantRunning, wantFailed)
			}
		}
		time.Sleep(time.Second)
		check(time.Second, 1, 0)
		time.Sleep(20 * time.Second)
		check(21*time.Second, 0, 1)
		time.Sleep(12 * time.Second)
		check(33*time.Second, 1, 1)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if got := running.Load(); got != 0 {
			t.Errorf("%d fetches still running after Run returned", got)
		}
	})
}

func TestRunRenews(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		keyA, keyB := nodeKey(t, 0xa), nodeKey(t, 0xb)
		chainB := f.member("b", keyB, time.Now(), 30*24*time.Hour)
		a := f.newRoster(t, Config{Self: f.founder(keyA, time.Now()), RootKey: f.root, Now: time.Now, Interval: time.Hour})
		b := f.newRoster(t, Config{Self: chainB, Now: time.Now, Interval: time.Hour})
		sb, _ := b.Snapshot()
		sa, _ := a.Snapshot()
		if err := errors.Join(a.Apply(sb), b.Apply(sa)); err != nil {
			t.Fatal(err)
		}
		fetchFrom := func(r *Roster) FetchFunc {
			return func(ctx context.Context, p Peer) (*Snapshot, error) { return r.Snapshot() }
		}
		ctx, cancel := context.WithCancel(t.Context())
		errs := make(chan error, 2)
		go func() { errs <- a.Run(ctx, fetchFrom(b)) }()
		go func() { errs <- b.Run(ctx, fetchFrom(a)) }()
		time.Sleep(21 * 24 * time.Hour)
		cancel()
		if err := errors.Join(<-errs, <-errs); err != nil {
			t.Fatal(err)
		}
		if got := b.Self(); got.Delegation != nil || !got.Certificate.NotAfter.After(chainB.Certificate.NotAfter) {
			t.Errorf("B's membership was not renewed: not after %v", got.Certificate.NotAfter)
		}
	})
}
