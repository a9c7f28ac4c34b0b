package services

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// testRoster is a community of n members; member 0 is the catalog under
// test.
type testRoster struct {
	members []Member
	privs   [][32]byte
}

func newTestRoster(t testing.TB, n int) *testRoster {
	r := &testRoster{}
	for i := range n {
		m, priv := testMember(t, i)
		r.members = append(r.members, m)
		r.privs = append(r.privs, priv)
	}
	return r
}

func (r *testRoster) config(i int) Config {
	return Config{PrivateKey: r.privs[i], Self: r.members[i], Members: func() []Member { return r.members }}
}

// sign makes a document of member i with the given services.
func (r *testRoster) sign(t testing.TB, i int, version uint64, now time.Time, mod func(*docPayload), services ...Service) []byte {
	t.Helper()
	p := &docPayload{V: docFormat, Owner: r.members[i].NodeID, Epoch: 7, Version: version,
		Issued: now, Expires: now.Add(DefaultLease), Services: []docEntry{}}
	for _, s := range services {
		p.Services = append(p.Services, docEntry{Instance: s.Instance, Type: s.Type, Port: s.Port, Healthy: true, Updated: now})
	}
	if mod != nil {
		mod(p)
	}
	b, err := signDocument(testSigner(t, r.privs[i]), bytes.NewReader(make([]byte, 64)), p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// announce makes c believe member id is alive and announces doc.
func announce(c *Catalog, id string, doc []byte, p *docPayload) meta {
	m := meta{Epoch: p.Epoch, Version: p.Version, Entries: uint16(len(p.Services)), Hash: docHash(doc)}
	c.nodeAlive(&memberlist.Node{Name: id, Meta: m.encode()})
	return m
}

func payloadOf(t testing.TB, doc []byte) *docPayload {
	t.Helper()
	p, err := parsePayload(doc[docHeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAcceptRejectsForgedDocuments(t *testing.T) {
	r := newTestRoster(t, 4)
	stranger, strangerPriv := testMember(t, 99)
	now := time.Now().UTC().Truncate(time.Millisecond)
	c, err := New(r.config(0))
	if err != nil {
		t.Fatal(err)
	}
	svc := Service{Instance: "Mesh radio", Type: "_http._tcp", Port: 8000}
	good := r.sign(t, 1, 10, now, nil, svc)
	m1 := announce(c, r.members[1].NodeID, good, payloadOf(t, good))
	forgedBy3 := r.sign(t, 3, 11, now, func(p *docPayload) { p.Owner = r.members[1].NodeID }, svc) // member 3 signs as 1
	tampered := bytes.Replace(bytes.Clone(good), []byte(`"port":8000`), []byte(`"port":8001`), 1)
	owner2 := r.sign(t, 1, 12, now, func(p *docPayload) { p.Owner = r.members[2].NodeID }, svc) // 1's doc claiming 2
	expired := r.sign(t, 1, 13, now, func(p *docPayload) {
		p.Issued, p.Expires = now.Add(-2*time.Hour), now.Add(-time.Hour)
	}, svc)
	future := r.sign(t, 1, 14, now, func(p *docPayload) {
		p.Issued, p.Expires = now.Add(time.Hour), now.Add(2*time.Hour)
	}, svc)
	older := r.sign(t, 1, 9, now, nil, svc)
	r2 := &testRoster{members: []Member{stranger}, privs: [][32]byte{strangerPriv}}
	unknown := r2.sign(t, 0, 1, now, nil, svc)

	tests := []struct {
		name      string
		owner     string
		doc       []byte
		fromOwner bool
		want      rejectReason
	}{
		{"signed by another member", r.members[1].NodeID, forgedBy3, false, rejectSignature},
		{"tampered", r.members[1].NodeID, tampered, true, rejectSignature},
		{"another owner's id", r.members[1].NodeID, owner2, true, rejectWrongOwner},
		{"served as the other owner's", r.members[2].NodeID, good, false, rejectSignature},
		{"expired", r.members[1].NodeID, expired, true, rejectExpired},
		{"issued in the future", r.members[1].NodeID, future, true, rejectFuture},
		{"not a member", stranger.NodeID, unknown, true, rejectUnknownOwner},
		{"unsigned", r.members[1].NodeID, good[docHeaderSize:], true, rejectMalformed},
		{"oversized", r.members[1].NodeID, append(bytes.Clone(good), make([]byte, MaxDocSize)...), true, rejectTooLarge},
		{"older than announced", r.members[1].NodeID, older, true, rejectStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sample := `cloudbox_catalog_documents_rejected_total{reason="` + string(tt.want) + `"}`
			before := metric(t, c, sample)
			err := c.accept(tt.owner, tt.doc, m1, tt.fromOwner)
			if err == nil {
				t.Fatal("accept() = nil, want a rejection")
			}
			if got := reasonOf(err); got != tt.want {
				t.Fatalf("rejected as %s (%v), want %s", got, err, tt.want)
			}
			if got := metric(t, c, sample); got != before+1 {
				t.Errorf("%s = %d, want %d", sample, got, before+1)
			}
			if got := c.Services(Filter{}); len(got) != 0 {
				t.Errorf("Services() = %+v after a rejected document", got)
			}
		})
	}
	if err := c.accept(r.members[1].NodeID, good, m1, false); err != nil {
		t.Fatalf("accept(good copy from another member) = %v", err)
	}
	got := c.Services(Filter{})
	if len(got) != 1 || got[0].Port != 8000 || got[0].OwnerName != "box1" || got[0].OwnerIPv6 != r.members[1].IPv6 {
		t.Fatalf("Services() = %+v, want the good entry of box1", got)
	}
	if n := metric(t, c, "cloudbox_catalog_documents_accepted_total"); n != 1 {
		t.Errorf("accepted_total = %d, want 1", n)
	}
	// A replay of an older version is stale now that version 10 is held.
	if err := c.accept(r.members[1].NodeID, older, m1, true); reasonOf(err) != rejectStale {
		t.Errorf("accept(older) = %v, want stale", err)
	}
}

func TestGossipRefusesStrangers(t *testing.T) {
	r := newTestRoster(t, 2)
	c, err := New(r.config(0))
	if err != nil {
		t.Fatal(err)
	}
	d := &gossipDelegate{c: c}
	m1 := r.members[1]
	at := func(name string, ip netip.Addr, port uint16) *memberlist.Node {
		return &memberlist.Node{Name: name, Addr: ip.AsSlice(), Port: port}
	}
	if err := d.NotifyAlive(at(m1.NodeID, m1.IPv6, DefaultGossipPort)); err != nil {
		t.Errorf("NotifyAlive(member) = %v", err)
	}
	if err := d.NotifyAlive(at("intruder", m1.IPv6, DefaultGossipPort)); !errors.Is(err, errNotMember) {
		t.Errorf("NotifyAlive(stranger) = %v, want errNotMember", err)
	}
	if err := d.NotifyAlive(at(m1.NodeID, netip.MustParseAddr("2001:db8::99"), DefaultGossipPort)); err == nil {
		t.Error("NotifyAlive(member at a foreign address) accepted")
	}
	if err := d.NotifyMerge([]*memberlist.Node{at("x", m1.IPv6, 1), at("y", m1.IPv6, 1)}); err == nil {
		t.Error("NotifyMerge(cluster of strangers) accepted")
	}
	if err := d.NotifyMerge([]*memberlist.Node{at("x", m1.IPv6, 1), at(m1.NodeID, m1.IPv6, DefaultGossipPort)}); err != nil {
		t.Errorf("NotifyMerge(with a member) = %v", err)
	}
	if n := metric(t, c, "cloudbox_catalog_gossip_refused_total"); n != 3 {
		t.Errorf("gossip_refused_total = %d, want 3", n)
	}
}

func TestPublishLimits(t *testing.T) {
	r := newTestRoster(t, 1)
	cfg := r.config(0)
	cfg.Builtin = func() []Service { return []Service{{Instance: "Panel", Type: "_http._tcp", Port: 80}} }
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.refreshBuiltin()
	if err := c.Publish(Service{Instance: "Panel", Type: "_http._tcp", Port: 8080}); !errors.Is(err, ErrBuiltin) {
		t.Errorf("Publish(builtin name) = %v, want ErrBuiltin", err)
	}
	if err := c.Unpublish("_http._tcp", "Panel"); !errors.Is(err, ErrBuiltin) {
		t.Errorf("Unpublish(builtin) = %v, want ErrBuiltin", err)
	}
	if err := c.Unpublish("_http._tcp", "nothing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Unpublish(absent) = %v, want ErrNotFound", err)
	}
	if err := c.Publish(Service{Instance: "x", Type: "http", Port: 1}); !errors.Is(err, ErrInvalidService) {
		t.Errorf("Publish(invalid) = %v, want ErrInvalidService", err)
	}
	// Big TXT records: the document hits MaxDocSize before MaxEntries.
	txt := map[string]string{}
	for i := range 5 {
		txt[string(rune('a'+i))] = strings.Repeat("v", 250)
	}
	var sizeErr error
	for i := 0; i < MaxEntries-1 && sizeErr == nil; i++ {
		sizeErr = c.Publish(Service{Instance: "big " + string(rune('A'+i)), Type: "_http._tcp", Port: 1, TXT: txt})
	}
	if !errors.Is(sizeErr, ErrDocumentTooLarge) {
		t.Fatalf("publishing big services: %v, want ErrDocumentTooLarge", sizeErr)
	}
	if n := len(c.own.raw); n > MaxDocSize {
		t.Fatalf("own document is %d bytes", n)
	}
	// Small services: the count hits MaxEntries (the panel is one of them).
	c2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c2.refreshBuiltin()
	for i := range MaxEntries - 1 {
		if err := c2.Publish(Service{Instance: fmt.Sprintf("s%02d", i), Type: "_http._tcp", Port: 1}); err != nil {
			t.Fatalf("Publish #%d: %v", i, err)
		}
	}
	if err := c2.Publish(Service{Instance: "one more", Type: "_http._tcp", Port: 1}); !errors.Is(err, ErrTooManyServices) {
		t.Fatalf("Publish #65 = %v, want ErrTooManyServices", err)
	}
	if err := c2.Publish(Service{Instance: "s00", Type: "_http._tcp", Port: 2}); err != nil {
		t.Fatalf("replacing a service at the limit: %v", err)
	}
	if n := len(c2.Services(Filter{Owner: "box0"})); n != MaxEntries {
		t.Fatalf("%d services, want %d", n, MaxEntries)
	}
}

func TestPersistence(t *testing.T) {
	r := newTestRoster(t, 1)
	cfg := r.config(0)
	cfg.StateDir = t.TempDir()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	printer := Service{Instance: "Printer", Type: "_ipp._tcp", Port: 631, Addr: netip.MustParseAddr("198.51.100.7"),
		TXT: map[string]string{"rp": "ipp/print"}, Description: "2nd floor"}
	app := Service{Instance: "Wiki", Type: "_http._tcp", Port: 8080}
	for _, s := range []Service{printer, app} {
		if err := c.Publish(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Unpublish(app.Type, app.Instance); err != nil {
		t.Fatal(err)
	}
	c2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := c2.Services(Filter{})
	if len(got) != 1 || !sameService(&got[0].Service, &printer) {
		t.Fatalf("after restart Services() = %+v, want only %+v", got, printer)
	}

	// A corrupt file is moved aside, kept, logged and counted.
	path := filepath.Join(cfg.StateDir, stateFile)
	for _, bad := range []string{`{"version":1,"services":[{"instance":"x"`, `{"version":1,"services":[{"instance":"x","type":"_http._tcp","port":0}]}`} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		c3, err := New(cfg)
		if err != nil {
			t.Fatalf("New with a corrupt file: %v", err)
		}
		if n := metric(t, c3, "cloudbox_catalog_state_corrupt_total"); n != 1 {
			t.Errorf("state_corrupt_total = %d, want 1", n)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("corrupt file still in place: %v", err)
		}
		aside, _ := filepath.Glob(path + ".corrupt-*")
		found := false
		for _, a := range aside {
			if b, _ := os.ReadFile(a); string(b) == bad {
				found = true
			}
		}
		if !found {
			t.Errorf("corrupt content %q not kept in %v", bad, aside)
		}
		// The box keeps working and can save again.
		if err := c3.Publish(app); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHealthCheckFlipsHealthy(t *testing.T) {
	r := newTestRoster(t, 1)
	cfg := r.config(0)
	var down sync.Map // netip.AddrPort -> bool
	var checks atomic.Int32
	cfg.Check = func(ctx context.Context, addr netip.AddrPort) error {
		checks.Add(1)
		if _, ok := down.Load(addr); ok {
			return errors.New("connection refused")
		}
		return nil
	}
	cfg.Builtin = func() []Service { return []Service{{Instance: "Panel", Type: "_http._tcp", Port: 80}} }
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.refreshBuiltin()
	printer := Service{Instance: "Printer", Type: "_ipp._tcp", Port: 631, Addr: netip.MustParseAddr("198.51.100.7")}
	voip := Service{Instance: "Phones", Type: "_sip._udp", Port: 5060}
	for _, s := range []Service{printer, voip} {
		if err := c.Publish(s); err != nil {
			t.Fatal(err)
		}
	}
	healthy := func() map[string]bool {
		m := map[string]bool{}
		for _, rec := range c.Services(Filter{}) {
			m[rec.Instance] = rec.Healthy
		}
		return m
	}
	ctx := context.Background()
	c.checkHealth(ctx)
	if n := checks.Load(); n != 2 {
		t.Errorf("%d checks, want 2 (TCP services only)", n)
	}
	v1 := c.own.meta.Version
	down.Store(netip.AddrPortFrom(printer.Addr, 631), true)
	changed := c.Changed()
	c.checkHealth(ctx)
	select {
	case <-changed:
	default:
		t.Error("Changed() not signalled by a health flip")
	}
	if h := healthy(); h["Printer"] || !h["Panel"] || !h["Phones"] {
		t.Fatalf("health after the printer went down: %v", h)
	}
	if c.own.meta.Version <= v1 {
		t.Errorf("version %d not bumped from %d", c.own.meta.Version, v1)
	}
	p, err := openDocument(c.own.raw, r.members[0].NodeKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range p.Services {
		if e.Instance == "Printer" && e.Healthy {
			t.Error("signed document still says the printer is healthy")
		}
	}
	down.Delete(netip.AddrPortFrom(printer.Addr, 631))
	c.checkHealth(ctx)
	if h := healthy(); !h["Printer"] {
		t.Fatalf("printer back up but health %v", h)
	}
	if got := c.Services(Filter{Health: "unhealthy"}); len(got) != 0 {
		t.Errorf("unhealthy services: %+v", got)
	}
}

func TestPullLimitsChurn(t *testing.T) {
	r := newTestRoster(t, 2)
	cfg := r.config(0)
	now := time.Now().UTC().Truncate(time.Millisecond)
	var version atomic.Uint64
	var fetches atomic.Int32
	cfg.Fetch = func(ctx context.Context, from Member, owner string) ([]byte, error) {
		fetches.Add(1)
		return r.sign(t, 1, version.Load(), now, nil, Service{Instance: "churn", Type: "_http._tcp", Port: 1}), nil
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	id := r.members[1].NodeID
	// Member 1 announces a new version 20 times in a burst.
	for v := uint64(1); v <= 20; v++ {
		version.Store(v)
		doc := r.sign(t, 1, v, now, nil, Service{Instance: "churn", Type: "_http._tcp", Port: 1})
		announce(c, id, doc, payloadOf(t, doc))
		c.pull(context.Background(), id)
	}
	if n := fetches.Load(); n != pullBurst {
		t.Errorf("%d fetches for 20 versions in a burst, want %d", n, pullBurst)
	}
	if n := metric(t, c, `cloudbox_catalog_pulls_total{result="limited"}`); n != 20-pullBurst {
		t.Errorf("limited pulls = %d, want %d", n, 20-pullBurst)
	}
	if n := metric(t, c, `cloudbox_catalog_pulls_total{result="ok"}`); n != pullBurst {
		t.Errorf("ok pulls = %d, want %d", n, pullBurst)
	}
}

func TestTokenBucket(t *testing.T) {
	p := &peer{tokens: pullBurst, refilled: time.Unix(0, 0)}
	at := time.Unix(0, 0)
	for i := range pullBurst {
		if ok, _ := p.allow(at); !ok {
			t.Fatalf("pull %d of the burst refused", i)
		}
	}
	ok, retry := p.allow(at)
	if ok || retry != at.Add(2*time.Second) {
		t.Fatalf("after the burst: allow = %v, retry at %v, want refused until +2s", ok, retry)
	}
	if ok, _ := p.allow(at.Add(2 * time.Second)); !ok {
		t.Fatal("refused after refill")
	}
}
