package appliance

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cloudbox/cloudbox/dnsproxy"
	"github.com/cloudbox/cloudbox/overlay/roster"
	"github.com/cloudbox/cloudbox/services"
)

// CatalogDir is the directory, inside the state directory, of the service
// catalog: the services this box's users published.
const CatalogDir = "services"

// catalogRetry is the pause before the catalog is started again after its
// gossip could not start (the overlay address not configured yet, the port
// in use).
const catalogRetry = 2 * time.Second

// errCatalogNotRunning means the catalog runs only on a member whose
// overlay runs.
var errCatalogNotRunning = errors.New("the service catalog runs only while this box is a member of a community and its overlay runs; join a community first")

// catalogService is the service catalog component (package services): it
// runs while the overlay runs, over the overlay.
type catalogService struct {
	// Immutable after newCatalogService.
	stateDir string
	log      *slog.Logger
	// changed is notified when the catalog's services may have changed.
	changed *broadcast

	// mu guards the following.
	mu sync.Mutex
	// builtin returns the services of cloudboxd itself; set by Run once
	// the HTTP and DNS addresses are known. Nil means none.
	builtin func() []services.Service
	cat     *services.Catalog // nil while not running
	problem string
}

func newCatalogService(stateDir string, log *slog.Logger, changed *broadcast) *catalogService {
	return &catalogService{stateDir: filepath.Join(stateDir, CatalogDir), log: log.With("component", "catalog"), changed: changed}
}

// setBuiltin sets the function that returns the services cloudboxd
// publishes itself.
func (cs *catalogService) setBuiltin(f func() []services.Service) {
	cs.mu.Lock()
	cs.builtin = f
	cs.mu.Unlock()
}

func (cs *catalogService) builtinServices() []services.Service {
	cs.mu.Lock()
	f := cs.builtin
	cs.mu.Unlock()
	if f == nil {
		return nil
	}
	return f()
}

// current returns the running catalog, or nil.
func (cs *catalogService) current() *services.Catalog {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.cat
}

// catalogMembers returns the roster's members as the catalog wants them.
func catalogMembers(r *roster.Roster) []services.Member {
	ms := r.Members()
	out := make([]services.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, services.Member{NodeID: m.NodeID, Name: m.Name, NodeKey: m.NodeKey, IPv4: m.IPv4, IPv6: m.IPv6})
	}
	return out
}

// run runs the catalog over the overlay until ctx is done: key is this
// box's node key, pullPort the port of the overlay's TCP service, which
// serves the catalog's documents (see rosterHandler). When gossip cannot
// start, run reports it and tries again.
func (cs *catalogService) run(ctx context.Context, key [32]byte, r *roster.Roster, pullPort uint16) {
	for {
		var self services.Member
		for _, m := range catalogMembers(r) {
			if m.NodeKey == r.Self().Certificate.NodeKey {
				self = m
			}
		}
		cat, err := services.New(services.Config{
			Logger:     cs.log,
			PrivateKey: key,
			Self:       self,
			Members:    func() []services.Member { return catalogMembers(r) },
			PullPort:   pullPort,
			StateDir:   cs.stateDir,
			Builtin:    cs.builtinServices,
		})
		if err != nil {
			// The saved services cannot be read: waiting will not help.
			cs.setProblem(fmt.Sprintf("%v; move %s away to start with no published services", err, cs.stateDir))
			cs.log.Error("catalog not running", "error", err)
			<-ctx.Done()
			return
		}
		cs.mu.Lock()
		cs.cat, cs.problem = cat, ""
		cs.mu.Unlock()
		done := make(chan error, 1)
		go func() { done <- cat.Run(ctx) }()
		var runErr error
		for waiting := true; waiting; {
			select {
			case runErr = <-done:
				waiting = false
			case <-cat.Changed():
				cs.changed.Notify()
			}
		}
		cs.mu.Lock()
		cs.cat = nil
		cs.mu.Unlock()
		cs.changed.Notify()
		if ctx.Err() != nil {
			return
		}
		cs.setProblem(fmt.Sprintf("gossip did not start: %v; retrying", runErr))
		cs.log.Warn("catalog failed, retrying", "error", runErr, "retry_in", catalogRetry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(catalogRetry):
		}
	}
}

func (cs *catalogService) setProblem(p string) {
	cs.mu.Lock()
	cs.problem = p
	cs.mu.Unlock()
}

// handler serves the catalog's documents to members over the overlay.
func (cs *catalogService) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cat := cs.current()
		if cat == nil {
			http.Error(w, errCatalogNotRunning.Error(), http.StatusServiceUnavailable)
			return
		}
		cat.Handler().ServeHTTP(w, r)
	})
}

// status is the "catalog" component of the status.
func (cs *catalogService) status(context.Context) ComponentStatus {
	cs.mu.Lock()
	cat, problem := cs.cat, cs.problem
	cs.mu.Unlock()
	if problem != "" {
		return ComponentStatus{OK: false, Error: problem}
	}
	if cat == nil {
		return ComponentStatus{OK: true, Detail: map[string]string{"state": "waiting for the overlay"}}
	}
	all := cat.Services(services.Filter{})
	owners := map[string]bool{}
	for _, rec := range all {
		owners[rec.OwnerID] = true
	}
	return ComponentStatus{OK: true, Detail: map[string]string{
		"state":    "running",
		"services": fmt.Sprint(len(all)),
		"boxes":    fmt.Sprint(len(owners)),
	}}
}

// zonePart returns the catalog's healthy services as DNS-SD records, and the
// extra host names they need: a service on the owner box points to the
// owner's "<id>.id" name, one on another address (a printer on the owner's
// LAN) to a name of its own under it.
func (cs *catalogService) zonePart() ([]dnsproxy.Host, []dnsproxy.Service) {
	cat := cs.current()
	if cat == nil {
		return nil, nil
	}
	var svcs []dnsproxy.Service
	var hosts []dnsproxy.Host
	var owners []services.Record
	for _, rec := range cat.Services(services.Filter{Health: "healthy"}) {
		id := strings.ToLower(rec.OwnerID)
		host := id[:min(16, len(id))] + ".id"
		if rec.Addr.IsValid() {
			h := fnv.New32a()
			h.Write([]byte(rec.Type + "\x00" + rec.Instance))
			host = fmt.Sprintf("s%08x.%s", h.Sum32(), host)
			hosts = append(hosts, dnsproxy.Host{Name: host, Addrs: []netip.Addr{rec.Addr}})
		}
		svcs = append(svcs, dnsproxy.Service{
			Instance: rec.Instance, Type: rec.Type, Host: host, Port: rec.Port, TXT: txtStrings(rec.TXT),
		})
		owners = append(owners, rec)
	}
	disambiguate(svcs, owners)
	return hosts, svcs
}

// disambiguate renames the DNS-SD instances that several boxes publish
// under the same name and type (RFC 6763 §4.1 needs unique names): each
// becomes "<name> (<box>)", or "<name> (<node ID prefix>)" if the box names
// collide too, cut to the 63 bytes of a label.
func disambiguate(svcs []dnsproxy.Service, owners []services.Record) {
	key := func(s dnsproxy.Service) string { return strings.ToLower(s.Type + "\x00" + s.Instance) }
	count := map[string]int{}
	for _, s := range svcs {
		count[key(s)]++
	}
	for _, suffix := range []func(services.Record) string{
		func(r services.Record) string { return r.OwnerName },
		func(r services.Record) string { return r.OwnerID[:min(8, len(r.OwnerID))] },
	} {
		renamed := false
		for i, s := range svcs {
			if count[key(s)] > 1 {
				svcs[i].Instance = cutUTF8(owners[i].Instance, 63-len(suffix(owners[i]))-3) + " (" + suffix(owners[i]) + ")"
				renamed = true
			}
		}
		if !renamed {
			return
		}
		clear(count)
		for _, s := range svcs {
			count[key(s)]++
		}
	}
}

// cutUTF8 returns s cut to at most n bytes, on a rune boundary.
func cutUTF8(s string, n int) string {
	if n < 0 {
		n = 0
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// txtStrings renders TXT attributes as "key=value" strings, sorted.
func txtStrings(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// builtinServices returns the services cloudboxd publishes itself: the
// panel on the HTTP listener and DNS, each only when it listens on an
// address other boxes can reach. Their names end with " (<node>)", so that
// every box's are distinct on a LAN (mDNS) and in the zone.
func builtinServices(node string, httpAddr net.Addr, dns *dnsService) []services.Service {
	suffix := " (" + node + ")"
	var out []services.Service
	if ap, err := netip.ParseAddrPort(httpAddr.String()); err == nil && !ap.Addr().IsLoopback() {
		out = append(out, services.Service{Instance: cutUTF8("cloudbox panel", 63-len(suffix)) + suffix, Type: "_http._tcp", Port: ap.Port(),
			Description: "The web panel of this box", TXT: map[string]string{"path": "/"}})
	}
	if dns != nil && dns.srv != nil {
		for _, l := range dns.view().Listen {
			if ap, err := netip.ParseAddrPort(l); err == nil && !ap.Addr().IsLoopback() {
				out = append(out, services.Service{Instance: cutUTF8("cloudbox DNS", 63-len(suffix)) + suffix, Type: "_domain._udp", Port: ap.Port(),
					Description: "DNS: the community zone and a caching resolver"})
				break
			}
		}
	}
	return out
}
