package services

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudbox/cloudbox/services/catalogtest"
)

// TestReadmitRefusedMember: box2 joins the community through box1 while
// box0's roster does not list it yet, so box0 refuses the gossip about it.
// Once box0's roster lists box2, box0 must learn of it and list its
// service within a few seconds, not at its next periodic join or push/pull.
func TestReadmitRefusedMember(t *testing.T) {
	checkGoroutines(t)
	synctest.Test(t, testReadmitRefusedMember)
}

func testReadmitRefusedMember(t *testing.T) {
	const n = 3
	r := newTestRoster(t, n)
	cfgs, byID := memConfigs(t, r, catalogtest.NewNetwork())
	var knows2 atomic.Bool // whether box0's roster lists box2
	cats := make([]*Catalog, n)
	for i, cfg := range cfgs {
		cfg.Fetch = func(ctx context.Context, from Member, owner string) ([]byte, error) {
			return serveFetch(ctx, cats[byID[from.NodeID]], from, owner)
		}
		cfg.Builtin = func() []Service {
			return []Service{{Instance: "Panel of " + r.members[i].Name, Type: "_http._tcp", Port: 80}}
		}
		if i == 0 {
			cfg.Members = func() []Member {
				if knows2.Load() {
					return r.members
				}
				return r.members[:2]
			}
		}
		var err error
		if cats[i], err = New(cfg); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(i int) {
		wg.Go(func() {
			if err := cats[i].Run(ctx); err != nil {
				t.Errorf("box%d Run: %v", i, err)
			}
		})
	}
	defer func() {
		cancel()
		wg.Wait()
		time.Sleep(10 * time.Second) // memberlist's probes in flight end at their timeouts
		synctest.Wait()
	}()
	run(0)
	run(1)
	waitFor(t, 15*time.Second, "box0 and box1 to know each other", func() bool {
		return cats[0].countAlive() == 1 && cats[1].countAlive() == 1
	})
	run(2)
	waitFor(t, 15*time.Second, "box2 to know both and box0 to refuse it", func() bool {
		return cats[2].countAlive() == 2 && cats[1].countAlive() == 2 &&
			metric(t, cats[0], "cloudbox_catalog_gossip_refused_total") > 0
	})
	if got := cats[0].countAlive(); got != 1 {
		t.Fatalf("box0 counts %d members alive before its roster lists box2, want 1", got)
	}

	knows2.Store(true)
	took := waitFor(t, 5*time.Second, "box0 to list box2's service", func() bool {
		return len(cats[0].Services(Filter{Owner: r.members[2].NodeID})) == 1
	})
	t.Logf("box0 listed box2's service %v after its roster listed box2", took)
}
