package appliance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/dnsproxy"
)

// Defaults of DNSConfig.
const (
	// DefaultDNSListen is where a box answers DNS: every address, UDP and
	// TCP port 53, so that LAN clients and members over the overlay reach
	// it whatever addresses DHCP and the community give the box.
	DefaultDNSListen = ":53"
	// DefaultResolvConf is the file the upstream resolvers are read from
	// when DNSConfig.Upstreams is empty; gokrazy's DHCP client writes it.
	DefaultResolvConf = "/etc/resolv.conf"
)

// dnsZoneRefresh is how often the community zone is rebuilt from the
// members even when no change was signalled.
const dnsZoneRefresh = 5 * time.Second

// DNSConfig configures the DNS component of Run (package dnsproxy): the
// authoritative community zone, with a name for every member, and a caching
// forwarder for every other name. The zero value answers on
// DefaultDNSListen with the zone dnsproxy.DefaultDomain and forwards to the
// resolvers of DefaultResolvConf.
type DNSConfig struct {
	// Listen lists the addresses to answer on, each with UDP and TCP
	// ("192.0.2.1:53", "127.0.0.1:0" for a free port). Zero means
	// DefaultDNSListen. An address that cannot be bound (in use, port 53
	// without CAP_NET_BIND_SERVICE) makes Run fail.
	Listen []string

	// Domain is the community zone, e.g. "cb.home.arpa.". Zero means
	// dnsproxy.DefaultDomain.
	Domain string

	// Upstreams are the resolvers names outside the zone are forwarded
	// to, IP addresses with an optional port. Zero means the nameserver
	// lines of ResolvConf, except this box's own loopback resolvers; if
	// there are none, only the community zone is answered.
	Upstreams []string

	// ResolvConf is the resolv.conf read when Upstreams is empty. Zero
	// means DefaultResolvConf; a missing file means no upstreams.
	ResolvConf string

	// Disabled turns the DNS server off; its component reports
	// "disabled".
	Disabled bool
}

func (c DNSConfig) withDefaults() DNSConfig {
	if len(c.Listen) == 0 {
		c.Listen = []string{DefaultDNSListen}
	}
	if c.Domain == "" {
		c.Domain = dnsproxy.DefaultDomain
	}
	if c.ResolvConf == "" {
		c.ResolvConf = DefaultResolvConf
	}
	return c
}

// zoneSource is what the community zone is built from: the overlay
// gives the members' names, the catalog the services.
type zoneSource interface {
	// zonePart returns the source's names and services; nil when it
	// has none (the box is not a member yet).
	zonePart() ([]dnsproxy.Host, []dnsproxy.Service)
}

// dnsService is the DNS component of the daemon.
type dnsService struct {
	// Immutable after openDNS.
	cfg       DNSConfig
	log       *slog.Logger
	srv       *dnsproxy.Server // nil when disabled
	upstreams []string
	sources   []zoneSource
	changed   func() <-chan struct{} // nil: refresh on the timer only
	allowed   func() []netip.Prefix  // networks allowed next to the defaults

	// mu guards the following.
	mu     sync.Mutex
	zone   dnsproxy.Zone
	nets   []netip.Prefix // last result of allowed
	failed error
}

// openDNS prepares the DNS component. allowed returns the networks, next to
// dnsproxy.DefaultAllowedNets, whose clients get answers (the community's
// prefixes and the box's own subnets); it is called at every refresh, so
// that a join or new DHCP lease takes effect. changed, if not nil, signals
// when the sources may have changed.
func openDNS(cfg DNSConfig, allowed func() []netip.Prefix, logger *slog.Logger, changed func() <-chan struct{}, sources ...zoneSource) (*dnsService, error) {
	cfg = cfg.withDefaults()
	d := &dnsService{cfg: cfg, log: logger.With("component", "dns"), sources: sources, changed: changed, allowed: allowed}
	if cfg.Disabled {
		return d, nil
	}
	d.upstreams = cfg.Upstreams
	if len(d.upstreams) == 0 {
		ups, err := readResolvConf(cfg.ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("reading the upstream resolvers: %w", err)
		}
		d.upstreams = ups
	}
	srv, err := dnsproxy.New(dnsproxy.Config{
		Logger:    d.log,
		Listen:    cfg.Listen,
		Domain:    cfg.Domain,
		Upstreams: d.upstreams,
	})
	if err != nil {
		return nil, fmt.Errorf("configuring dns: %w", err)
	}
	d.srv = srv
	return d, nil
}

// readResolvConf returns the nameservers of a resolv.conf, without the
// loopback ones (on a box that would be cloudboxd itself). A missing file
// is no nameserver.
func readResolvConf(path string) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		ip, err := netip.ParseAddr(fields[1])
		if err != nil || ip.IsLoopback() || ip.IsUnspecified() || ip.Zone() != "" {
			continue
		}
		out = append(out, ip.String())
	}
	return out, sc.Err()
}

// run serves DNS and keeps the zone current until ctx is done.
func (d *dnsService) run(ctx context.Context) error {
	if d.srv == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- d.srv.Run(ctx) }()
	select {
	case <-d.srv.Ready():
		d.log.Info("dns forwarding", "upstreams", strings.Join(d.upstreams, ","))
	case err := <-served:
		return d.fail(fmt.Errorf("serving dns on %s: %w (--dns picks other addresses, --dns off turns it off)",
			strings.Join(d.cfg.Listen, ","), err))
	}
	t := time.NewTicker(dnsZoneRefresh)
	defer t.Stop()
	for {
		d.refresh()
		var changed <-chan struct{}
		if d.changed != nil {
			changed = d.changed()
		}
		select {
		case <-ctx.Done():
			return d.fail(<-served)
		case err := <-served:
			if ctx.Err() != nil || err == nil {
				return d.fail(err)
			}
			return d.fail(fmt.Errorf("serving dns: %w", err))
		case <-t.C:
		case <-changed:
		}
	}
}

func (d *dnsService) fail(err error) error {
	if err != nil {
		d.mu.Lock()
		d.failed = err
		d.mu.Unlock()
	}
	return err
}

// refresh rebuilds the zone and the allowed networks and hands them to the
// server if they changed.
func (d *dnsService) refresh() {
	if d.allowed != nil {
		nets := d.allowed()
		d.mu.Lock()
		same := slices.Equal(nets, d.nets)
		d.nets = nets
		d.mu.Unlock()
		if !same {
			d.srv.SetAllowedNets(append(slices.Clone(dnsproxy.DefaultAllowedNets), nets...))
		}
	}
	var z dnsproxy.Zone
	for _, s := range d.sources {
		hosts, svcs := s.zonePart()
		z.Hosts = append(z.Hosts, hosts...)
		z.Services = append(z.Services, svcs...)
	}
	d.mu.Lock()
	same := reflect.DeepEqual(z, d.zone)
	d.mu.Unlock()
	if same {
		return
	}
	if err := d.srv.SetZone(z); err != nil {
		// A member whose name cannot be a host name is left out by
		// hostLabel; anything else is a bug worth a log line.
		d.log.Error("updating the community zone failed", "error", err)
		return
	}
	d.mu.Lock()
	d.zone = z
	d.mu.Unlock()
}

// status is the "dns" component of the status.
func (d *dnsService) status(context.Context) ComponentStatus {
	if d.srv == nil {
		return ComponentStatus{OK: true, Detail: map[string]string{"state": "disabled"}}
	}
	v := d.view()
	if v.Problem != "" {
		return ComponentStatus{OK: false, Error: v.Problem, Detail: map[string]string{"state": "failed"}}
	}
	return ComponentStatus{OK: true, Detail: map[string]string{
		"domain":    v.Domain,
		"listen":    strings.Join(v.Listen, ","),
		"upstreams": strings.Join(v.Upstreams, ","),
		"hosts":     strconv.Itoa(len(v.Hosts)),
		"services":  strconv.Itoa(len(v.Services)),
	}}
}

// dnsView is what the API, the panel and the metrics show of DNS.
type dnsView struct {
	Enabled   bool
	Problem   string
	Domain    string
	Listen    []string
	Upstreams []string
	Hosts     []dnsproxy.Host
	Services  []dnsproxy.Service
	Metrics   dnsproxy.Metrics
}

func (d *dnsService) view() dnsView {
	if d.srv == nil {
		return dnsView{}
	}
	d.mu.Lock()
	v := dnsView{Enabled: true, Domain: d.srv.Domain(), Upstreams: d.upstreams,
		Hosts: d.zone.Hosts, Services: d.zone.Services}
	if d.failed != nil {
		v.Problem = d.failed.Error()
	}
	d.mu.Unlock()
	for _, a := range d.srv.Addrs() {
		if a.Network() == "udp" {
			v.Listen = append(v.Listen, a.String())
		}
	}
	if v.Listen == nil {
		v.Listen = d.cfg.Listen
	}
	v.Metrics = d.srv.Metrics()
	return v
}

// hostLabel turns a member name into a DNS label: lower case, letters,
// digits and hyphens, other runs of characters become one hyphen, at most
// 63 bytes. It returns "" when nothing usable is left.
func hostLabel(name string) string {
	var b strings.Builder
	hyphen := false
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			if hyphen && b.Len() > 0 {
				b.WriteByte('-')
			}
			hyphen = false
			b.WriteRune(r)
		default:
			hyphen = true
		}
		if b.Len() >= 63 {
			break
		}
	}
	s := b.String()
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	return s
}

// zoneHostsOf names members in the zone: each by hostLabel of its name, a
// name two members share (or that is empty) gets "-" and the first six
// characters of the node ID appended, for every member that has it, so that
// no one is shadowed. Every member is also reachable as its node ID's first
// 16 characters under "id." ("id.<zone>"), a name that never changes.
func zoneHostsOf(members []zoneMember) []dnsproxy.Host {
	count := make(map[string]int)
	for _, m := range members {
		count[hostLabel(m.name)]++
	}
	var hosts []dnsproxy.Host
	for _, m := range members {
		label := hostLabel(m.name)
		id := strings.ToLower(m.nodeID)
		if label == "" || count[label] > 1 {
			label = strings.TrimPrefix(label+"-"+id[:min(6, len(id))], "-")
		}
		var addrs []netip.Addr
		for _, a := range []netip.Addr{m.ipv4, m.ipv6} {
			if a.IsValid() {
				addrs = append(addrs, a)
			}
		}
		hosts = append(hosts,
			dnsproxy.Host{Name: label, Addrs: addrs},
			dnsproxy.Host{Name: id[:min(16, len(id))] + ".id", Addrs: addrs})
	}
	order := func(a, b dnsproxy.Host) int { return strings.Compare(a.Name, b.Name) }
	sort.Slice(hosts, func(i, j int) bool { return order(hosts[i], hosts[j]) < 0 })
	return slices.CompactFunc(hosts, func(a, b dnsproxy.Host) bool { return a.Name == b.Name })
}

// zoneMember is what zoneHostsOf needs of a member.
type zoneMember struct {
	name, nodeID string
	ipv4, ipv6   netip.Addr
}

// localPrefixes returns the subnets of the box's interfaces that are up,
// except loopback and link-local ones (which dnsproxy allows already).
func localPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range upAddrPrefixes() {
		out = append(out, p.Masked())
	}
	return out
}

// upAddrPrefixes returns the addresses, with their prefix lengths, of
// the box's interfaces that are up, except loopback and link-local ones.
func upAddrPrefixes() []netip.Prefix {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp != 0 && ifc.Flags&net.FlagLoopback == 0 {
			out = append(out, addrPrefixesOf(&ifc)...)
		}
	}
	return out
}

// addrPrefixesOf returns the addresses, with their prefix lengths, of one
// interface, except link-local ones.
func addrPrefixesOf(ifc *net.Interface) []netip.Prefix {
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if p, err := netip.ParsePrefix(ipn.String()); err == nil && !p.Addr().IsLinkLocalUnicast() {
			out = append(out, p)
		}
	}
	return out
}
