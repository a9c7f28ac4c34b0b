package services

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestClusterLoopback runs five boxes on 127.0.0.1, each with memberlist's
// real UDP/TCP transport and its catalog served over real HTTP:
//
//	box0 ─┐                    box4 (malicious: serves a forged catalog
//	box1 ─┼─ gossip 127.0.0.1:random ─┤  that claims to be box0's)
//	box2 ─┤  pulls  http://127.0.0.1:random/catalog/v1
//	box3 ─┘
func TestClusterLoopback(t *testing.T) {
	checkGoroutines(t)
	const n = 5
	const evil = 4
	r := newTestRoster(t, n)
	urls := make([]string, n)
	transports := make([]*memberlist.NetTransport, n)
	for i := range n {
		tr, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0})
		if err != nil {
			t.Fatal(err)
		}
		transports[i] = tr
		r.members[i].Gossip = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(tr.GetAutoBindPort()))
	}
	byID := map[string]int{}
	for i, m := range r.members {
		byID[m.NodeID] = i
	}
	fetch := func(ctx context.Context, from Member, owner string) ([]byte, error) {
		url := urls[byID[from.NodeID]] + CatalogPath
		if owner != from.NodeID {
			url += "?node=" + owner
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: %s", url, resp.Status)
		}
		return io.ReadAll(io.LimitReader(resp.Body, MaxDocSize+1))
	}
	t.Cleanup(http.DefaultClient.CloseIdleConnections)

	// The malicious box's forgery: a phishing entry signed with its own
	// key, claiming box0 as owner.
	now := time.Now().UTC().Truncate(time.Millisecond)
	forged := r.sign(t, evil, uint64(now.UnixMilli())+1e6, now, func(p *docPayload) { p.Owner = r.members[0].NodeID },
		Service{Instance: "Bank login", Type: "_http._tcp", Port: 443})

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn + 4}))
	cats := make([]*Catalog, n)
	for i := range n {
		cfg := r.config(i)
		cfg.Logger = logger
		cfg.Transport = transports[i]
		cfg.Fetch = fetch
		cfg.Builtin = func() []Service {
			return []Service{{Instance: "Panel of " + r.members[i].Name, Type: "_http._tcp", Port: 80}}
		}
		cfg.Check = func(context.Context, netip.AddrPort) error { return nil }
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cats[i] = c
		h := c.Handler()
		if i == evil {
			h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(forged) })
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		urls[i] = srv.URL
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	cancels := make([]context.CancelFunc, n)
	errs := make([]error, n)
	done := make([]chan struct{}, n)
	for i, c := range cats {
		cctx, ccancel := context.WithCancel(ctx)
		cancels[i] = ccancel
		done[i] = make(chan struct{})
		wg.Go(func() {
			defer close(done[i])
			errs[i] = c.Run(cctx)
		})
	}
	defer func() {
		cancel()
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("box%d Run: %v", i, err)
			}
		}
	}()

	honest := cats[:evil]
	// Every honest box sees the four honest panels; the evil box's
	// catalog never verifies.
	d := waitFor(t, 20*time.Second, "the panels of all honest boxes everywhere", func() bool {
		for _, c := range honest {
			if len(c.Services(Filter{Type: "_http._tcp"})) != evil {
				return false
			}
		}
		return true
	})
	t.Logf("initial sync of %d boxes: %v", n, d)

	printer := Service{Instance: "Printer", Type: "_ipp._tcp", Port: 631, Addr: netip.MustParseAddr("198.51.100.7")}
	start := time.Now()
	if err := cats[2].Publish(printer); err != nil {
		t.Fatal(err)
	}
	d = waitFor(t, 10*time.Second, "the printer everywhere", func() bool {
		for _, c := range honest {
			got := c.Services(Filter{Type: "_ipp._tcp"})
			if len(got) != 1 || got[0].OwnerID != r.members[2].NodeID || got[0].Addr != printer.Addr {
				return false
			}
		}
		return true
	})
	t.Logf("published service visible on all boxes after %v", time.Since(start).Round(time.Millisecond))
	_ = d

	for i, c := range honest {
		for _, rec := range c.Services(Filter{}) {
			if rec.Instance == "Bank login" {
				t.Errorf("box%d shows the forged entry %+v", i, rec)
			}
		}
		if got := metric(t, c, `cloudbox_catalog_documents_rejected_total{reason="wrong_owner"}`); got < 1 {
			t.Errorf("box%d counted %d wrong_owner rejections, want >= 1", i, got)
		}
	}

	// box1 leaves gracefully: its panel disappears everywhere at once.
	start = time.Now()
	cancels[1]()
	select {
	case <-done[1]:
	case <-time.After(15 * time.Second):
		t.Fatal("box1's Run did not return")
	}
	waitFor(t, 5*time.Second, "box1's entries gone", func() bool {
		for i, c := range honest {
			if i == 1 {
				continue
			}
			if len(c.Services(Filter{Owner: r.members[1].NodeID})) != 0 {
				return false
			}
		}
		return true
	})
	t.Logf("left box's entries gone everywhere after %v", time.Since(start).Round(time.Millisecond))

	// Unpublishing propagates too.
	if err := cats[2].Unpublish(printer.Type, printer.Instance); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the printer gone", func() bool {
		for i, c := range honest {
			if i != 1 && len(c.Services(Filter{Type: "_ipp._tcp"})) != 0 {
				return false
			}
		}
		return true
	})
}
