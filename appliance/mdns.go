//go:build !router

package appliance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/dnsproxy/mdns"
	"github.com/cloudbox/cloudbox/services"
)

// mdnsRetry is the pause before mDNS starts again when its interface is
// missing or down (a box whose Ethernet is not up yet).
const mdnsRetry = 5 * time.Second

// mdnsSource is the TXT attribute that marks the catalog services this box
// publishes because it found them on its LAN by mDNS; they follow what the
// LAN announces and are removed when it withdraws them.
const mdnsSource = "src=mdns"

// mdnsService is the mDNS component of the daemon.
type mdnsService struct {
	// Immutable after openMDNS.
	cfg     MDNSConfig
	log     *slog.Logger
	host    string // first label of <host>.local
	selfID  string
	overlay string // the overlay's interface, never used for mDNS
	catalog *catalogService
	changed func() <-chan struct{}
	// endpoints returns the members' underlay endpoints by node ID.
	endpoints func() map[string][]netip.AddrPort

	// mu guards the following.
	mu      sync.Mutex
	r       *mdns.Responder // nil while not running
	iface   string
	problem string
}

func openMDNS(cfg MDNSConfig, node string, selfID, overlayIf string, cat *catalogService, endpoints func() map[string][]netip.AddrPort,
	changed func() <-chan struct{}, log *slog.Logger) *mdnsService {
	host := hostLabel(node)
	if host == "" {
		host = "cloudbox-" + strings.ToLower(selfID[:min(6, len(selfID))])
	}
	return &mdnsService{cfg: cfg, log: log.With("component", "mdns"), host: host, selfID: selfID,
		overlay: overlayIf, catalog: cat, changed: changed, endpoints: endpoints}
}

// lanInterface picks the LAN interface for mDNS: see MDNSConfig.Interface.
func lanInterface(exclude string) (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifc := range ifs {
		if ifc.Name == exclude || ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 ||
			ifc.Flags&net.FlagMulticast == 0 || ifc.Flags&net.FlagPointToPoint != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ifc.Name, nil
			}
		}
	}
	return "", errors.New("no LAN interface with an IPv4 address is up")
}

// run speaks mDNS until ctx is done, starting again when it fails (the
// interface went away).
func (m *mdnsService) run(ctx context.Context) error {
	if m.cfg.Disabled {
		return nil
	}
	for {
		err := m.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		m.mu.Lock()
		m.r, m.problem = nil, fmt.Sprintf("%v; retrying every %v", err, mdnsRetry)
		m.mu.Unlock()
		m.log.Warn("mdns failed, retrying", "error", err, "retry_in", mdnsRetry)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(mdnsRetry):
		}
	}
}

func (m *mdnsService) runOnce(ctx context.Context) error {
	iface := m.cfg.Interface
	if iface == "" {
		var err error
		if iface, err = lanInterface(m.overlay); err != nil {
			return err
		}
	}
	r, err := mdns.New(mdns.Config{
		Logger:    m.log,
		Interface: iface,
		Hostname:  m.host,
		Services:  func() []mdns.Service { return m.advertised(interfacePrefixes(iface)) },
		Browse:    m.cfg.Browse,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	m.mu.Lock()
	m.r, m.iface, m.problem = r, iface, ""
	m.mu.Unlock()
	m.log.Info("mdns running", "interface", iface, "host", m.host+".local", "browse", strings.Join(m.cfg.Browse, ","))
	for {
		select {
		case err := <-done:
			if err == nil {
				err = errors.New("mdns stopped")
			}
			return err
		case <-m.changed():
			r.Update()
			m.syncFound(r.Found())
		case <-r.FoundChanged():
			m.syncFound(r.Found())
		}
	}
}

// advertised returns what the responder announces: this box's healthy
// services as they are, and the community's healthy services as
// "<instance> (<box>)" on the host "<box>-cb.local" with the owner's
// overlay addresses (or the service's own address). Services this box took
// from the LAN are not announced back to it, and those of boxes with an
// underlay endpoint in lan (the LAN's prefixes) are left to their owner,
// which announces them on the same LAN itself.
func (m *mdnsService) advertised(lan []netip.Prefix) []mdns.Service {
	cat := m.catalog.current()
	if cat == nil {
		return nil
	}
	onLAN := map[string]bool{}
	if m.endpoints != nil {
		for id, eps := range m.endpoints() {
			for _, ep := range eps {
				if slices.ContainsFunc(lan, func(p netip.Prefix) bool { return p.Contains(ep.Addr().Unmap()) }) {
					onLAN[id] = true
				}
			}
		}
	}
	var out []mdns.Service
	for _, rec := range cat.Services(services.Filter{Health: "healthy"}) {
		txt := txtStrings(rec.TXT)
		if rec.OwnerID == m.selfID {
			if slices.Contains(txt, mdnsSource) {
				continue
			}
			s := mdns.Service{Instance: rec.Instance, Type: rec.Type, Port: rec.Port, TXT: txt}
			if rec.Addr.IsValid() {
				s.Host, s.Addrs = m.host+"-"+hostLabel(rec.Instance), []netip.Addr{rec.Addr}
			}
			out = append(out, s)
			continue
		}
		if onLAN[rec.OwnerID] {
			continue
		}
		owner := hostLabel(rec.OwnerName)
		if owner == "" {
			owner = strings.ToLower(rec.OwnerID[:min(8, len(rec.OwnerID))])
		}
		addrs := []netip.Addr{rec.Addr}
		if !rec.Addr.IsValid() {
			addrs = slices.DeleteFunc([]netip.Addr{rec.OwnerIPv4, rec.OwnerIPv6}, func(a netip.Addr) bool { return !a.IsValid() })
		}
		instance := rec.Instance
		if suffix := " (" + rec.OwnerName + ")"; !strings.HasSuffix(instance, suffix) {
			instance = cutUTF8(instance, 63-len(suffix)) + suffix
		}
		out = append(out, mdns.Service{
			Instance: instance, Type: rec.Type, Port: rec.Port, TXT: txt,
			Host: owner + "-cb", Addrs: addrs,
		})
	}
	return out
}

// syncFound publishes to the catalog the LAN services found by mDNS that
// are not there yet, and removes those the LAN no longer announces.
func (m *mdnsService) syncFound(found []mdns.Found) {
	cat := m.catalog.current()
	if cat == nil {
		return
	}
	want := map[string]services.Service{}
	for _, f := range found {
		s, ok := foundService(f)
		if !ok {
			continue
		}
		want[s.Type+"\x00"+s.Instance] = s
	}
	for _, rec := range cat.Services(services.Filter{Owner: m.selfID}) {
		if !slices.Contains(txtStrings(rec.TXT), mdnsSource) {
			continue
		}
		k := rec.Type + "\x00" + rec.Instance
		if s, ok := want[k]; ok && s.Port == rec.Port && s.Addr == rec.Addr && slices.Equal(txtStrings(s.TXT), txtStrings(rec.TXT)) {
			delete(want, k)
			continue
		}
		if _, ok := want[k]; !ok {
			if err := cat.Unpublish(rec.Type, rec.Instance); err != nil {
				m.log.Warn("removing a lan service from the catalog failed", "instance", rec.Instance, "error", err)
			}
		}
	}
	for _, s := range want {
		if err := cat.Publish(s); err != nil {
			m.log.Warn("publishing a lan service failed", "instance", s.Instance, "type", s.Type, "error", err)
			continue
		}
		m.log.Info("lan service published", "instance", s.Instance, "type", s.Type, "addr", s.Addr, "port", s.Port)
	}
}

// foundService turns a service found on the LAN into a catalog service of
// this box, at the LAN address it announced (IPv4 first), marked with
// mdnsSource. It reports false for one the catalog cannot take.
func foundService(f mdns.Found) (services.Service, bool) {
	var addr netip.Addr
	for _, a := range f.Addrs {
		if !addr.IsValid() || (a.Is4() && !addr.Is4()) {
			addr = a
		}
	}
	if !addr.IsValid() || f.Port == 0 {
		return services.Service{}, false
	}
	txt := map[string]string{}
	for _, kv := range f.TXT {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" || len(txt) >= services.MaxTXTKeys-1 {
			continue
		}
		txt[k] = v
	}
	k, v, _ := strings.Cut(mdnsSource, "=")
	txt[k] = v
	s := services.Service{Instance: f.Instance, Type: f.Type, Port: f.Port, Addr: addr, TXT: txt,
		Description: "found on the LAN of this box by mDNS (" + f.Host + ")"}
	if s.Validate() != nil {
		// Drop attributes the catalog refuses, keep the service.
		s.TXT = map[string]string{k: v}
		if s.Validate() != nil {
			return services.Service{}, false
		}
	}
	return s, true
}

// status is the "mdns" component of the status.
func (m *mdnsService) status(context.Context) ComponentStatus {
	if m.cfg.Disabled {
		return ComponentStatus{OK: true, Detail: map[string]string{"state": "disabled"}}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.problem != "" {
		return ComponentStatus{OK: false, Error: m.problem}
	}
	if m.r == nil {
		return ComponentStatus{OK: true, Detail: map[string]string{"state": "starting"}}
	}
	return ComponentStatus{OK: true, Detail: map[string]string{
		"state": "running", "interface": m.iface, "host": m.host + ".local", "browse": strings.Join(m.cfg.Browse, ","),
	}}
}

// writeMetrics adds the responder's counters, if it runs.
func (m *mdnsService) writeMetrics(b *bytes.Buffer) {
	if r := m.current(); r != nil {
		r.WriteMetrics(b)
	}
}

// current returns the running responder, or nil.
func (m *mdnsService) current() *mdns.Responder {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.r
}

// interfacePrefixes returns the subnets of the interface name.
func interfacePrefixes(name string) []netip.Prefix {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, p := range addrPrefixesOf(ifc) {
		out = append(out, p.Masked())
	}
	return out
}
