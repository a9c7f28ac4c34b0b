package services

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudbox/cloudbox/services/catalogtest"
)

// TestScale runs 200 catalogs in one process on catalogtest's in-memory
// network with 20% loss of gossip packets, and checks the catalog's
// promises at that size:
//   - a newly published service is visible on every box within 5 s;
//   - the entries of a box that crashes (no Leave gets out) are gone on
//     every box within 30 s;
//   - no other box is declared dead during the run.
//
// Ten boxes publish a service from the start, so the crash removes real
// entries; pulls call the owner's Handler in process and fail for the
// crashed box.
//
// It runs in a testing/synctest bubble: memberlist's timers (probes,
// timeouts, suspicion) run on the bubble's virtual clock, which advances
// only when every box is idle. So the times measured are protocol times, as
// if each box had its own CPU, not artefacts of 200 boxes sharing two cores
// under the race detector; loss is real (random drops).
func TestScale(t *testing.T) {
	checkGoroutines(t)
	wallStart := time.Now()
	synctest.Test(t, testScale)
	t.Logf("wall time %v", time.Since(wallStart).Round(time.Millisecond))
}

func testScale(t *testing.T) {
	const (
		n         = 200
		loss      = 0.20
		publisher = 17
		victim    = 5
		startWave = 20
		startGap  = 500 * time.Millisecond
	)
	r := newTestRoster(t, n)
	netw := catalogtest.NewNetwork()
	netw.SetLoss(loss)
	cfgs, byID := memConfigs(t, r, netw)
	cats := make([]*Catalog, n)
	var crashed atomic.Bool
	fetch := func(ctx context.Context, from Member, owner string) ([]byte, error) {
		i := byID[from.NodeID]
		if i == victim && crashed.Load() {
			return nil, errors.New("connection timed out")
		}
		return serveFetch(ctx, cats[i], from, owner)
	}
	for i, cfg := range cfgs {
		cfg.Fetch = fetch
		if i%20 == victim { // boxes 5, 25, 45...: one service each
			cfg.Builtin = func() []Service {
				return []Service{{Instance: "Panel of " + r.members[i].Name, Type: "_http._tcp", Port: 80}}
			}
		}
		var err error
		if cats[i], err = New(cfg); err != nil {
			t.Fatal(err)
		}
	}
	const withServices = n / 20

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	cancels := make([]context.CancelFunc, n)
	for i, c := range cats {
		if i > 0 && i%startWave == 0 { // boxes power up over a few seconds, not in the same instant
			time.Sleep(startGap)
		}
		cctx, ccancel := context.WithCancel(ctx)
		cancels[i] = ccancel
		wg.Go(func() {
			if err := c.Run(cctx); err != nil {
				t.Errorf("box%d Run: %v", i, err)
			}
		})
	}
	defer func() {
		cancel()
		wg.Wait()
		// memberlist's probes in flight end at their (virtual) timeouts,
		// after Shutdown; the bubble must be empty when this returns.
		time.Sleep(10 * time.Second)
		synctest.Wait()
	}()

	start := time.Now()
	converged := 0
	waitEvery(t, 250*time.Millisecond, 60*time.Second, "every box to know every box and the initial services", func() bool {
		converged = 0
		for _, c := range cats {
			if c.countAlive() != n-1 || len(c.Services(Filter{Type: "_http._tcp"})) != withServices {
				fails := 0
				for _, p := range c.Peers() {
					fails += p.Failures
				}
				t.Logf("%d of %d boxes converged; next: %d alive, %d services, %d deaths seen", converged, n, c.countAlive(), len(c.Services(Filter{Type: "_http._tcp"})), fails)
				return false
			}
			converged++
		}
		return true
	})
	t.Logf("%d boxes converged after %v", n, time.Since(start).Round(time.Millisecond))

	// A new service is visible everywhere within 5 s.
	start = time.Now()
	if err := cats[publisher].Publish(Service{Instance: "Radio", Type: "_icecast._tcp", Port: 8000}); err != nil {
		t.Fatal(err)
	}
	visible := waitEvery(t, 50*time.Millisecond, 5*time.Second, "the new service on every box", func() bool {
		for _, c := range cats {
			if len(c.Services(Filter{Type: "_icecast._tcp"})) != 1 {
				return false
			}
		}
		return true
	})
	t.Logf("new service visible on all %d boxes after %v", n, visible.Round(time.Millisecond))
	if visible > 5*time.Second {
		t.Errorf("new service took %v to be visible everywhere, want <= 5s", visible)
	}

	// A box crashes: nothing it sends gets out any more, and its Run's
	// Leave is lost too.
	victimID := r.members[victim].NodeID
	start = time.Now()
	netw.Crash(r.members[victim].Gossip)
	crashed.Store(true)
	cancels[victim]()
	gone := waitEvery(t, 100*time.Millisecond, 30*time.Second, "the crashed box's entries gone everywhere", func() bool {
		for i, c := range cats {
			if i != victim && len(c.Services(Filter{Owner: victimID})) != 0 {
				return false
			}
		}
		return true
	})
	t.Logf("crashed box's entries gone on all %d boxes after %v", n-1, gone.Round(time.Millisecond))
	if gone > 30*time.Second {
		t.Errorf("crashed box's entries took %v to go, want <= 30s", gone)
	}

	// No false deaths: only the victim was ever declared dead.
	falseDeaths := 0
	for i, c := range cats {
		if i == victim {
			continue
		}
		for _, p := range c.Peers() {
			if p.NodeID != victimID && p.Failures > 0 {
				falseDeaths += p.Failures
				t.Errorf("box%d declared %s dead %d times", i, p.NodeID, p.Failures)
			}
		}
	}
	sent, dropped := netw.Stats()
	t.Logf("false deaths: %d; gossip packets sent %d, dropped %d (%.1f%%)", falseDeaths, sent, dropped, 100*float64(dropped)/float64(sent))
}

// countAlive is the number of other members c counts as alive.
func (c *Catalog) countAlive() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, p := range c.peers {
		if p.alive {
			n++
		}
	}
	return n
}

// serveFetch is a Fetch that asks the handler of from's catalog c, without
// sockets.
func serveFetch(ctx context.Context, c *Catalog, from Member, owner string) ([]byte, error) {
	url := CatalogPath
	if owner != from.NodeID {
		url += "?node=" + owner
	}
	rec := httptest.NewRecorder()
	c.Handler().ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, url, nil))
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("%s: %d", url, rec.Code)
	}
	return rec.Body.Bytes(), nil
}

// memConfigs gives r's members gossip addresses on netw and returns their
// configurations, with netw's transports and a health check that always
// passes, and the members' indexes by node ID.
func memConfigs(t testing.TB, r *testRoster, netw *catalogtest.Network) ([]Config, map[string]int) {
	t.Helper()
	byID := map[string]int{}
	cfgs := make([]Config, len(r.members))
	for i := range r.members {
		r.members[i].Gossip = netip.AddrPortFrom(r.members[i].IPv4, DefaultGossipPort)
		byID[r.members[i].NodeID] = i
	}
	for i := range r.members {
		tr, err := netw.NewTransport(r.members[i].Gossip)
		if err != nil {
			t.Fatal(err)
		}
		cfgs[i] = r.config(i)
		cfgs[i].Transport = tr
		cfgs[i].Check = func(context.Context, netip.AddrPort) error { return nil }
	}
	return cfgs, byID
}
