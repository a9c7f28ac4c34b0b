package dnsproxy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/miekg/dns"
)

// DefaultZoneTTL is the TTL of the community zone's records, and its
// negative-caching TTL, when Zone.TTL is zero. It is short because the zone
// follows the community's catalog, which changes as boxes come and go.
const DefaultZoneTTL = 60 * time.Second

// Zone is the content of the community zone: the boxes' names and the
// services they announce. Names are relative to Config.Domain. A Zone is
// copied by SetZone; the caller may reuse it afterwards.
type Zone struct {
	// TTL is the TTL of every record, and the negative-caching TTL in the
	// SOA (RFC 2308 §4). Zero means DefaultZoneTTL.
	TTL time.Duration

	// Hosts get A and AAAA records.
	Hosts []Host

	// Services get DNS-SD records (RFC 6763).
	Services []Service
}

// Host is a name in the zone with its addresses.
type Host struct {
	// Name is relative to the zone: one or more labels of letters, digits
	// and hyphens ("box1", "box1.lab"), compared case-insensitively.
	Name string
	// Addrs become A (IPv4, also IPv4-mapped IPv6) and AAAA records. Empty
	// means the name exists with no records (NODATA).
	Addrs []netip.Addr
}

// Service is one DNS-SD service instance (RFC 6763 §4.1).
type Service struct {
	// Instance is the user-visible instance name, any UTF-8 text without
	// control characters up to 63 bytes, such as "Kitchen printer (2)"
	// (RFC 6763 §4.1.1). It is one DNS label: dots and spaces are part of
	// it.
	Instance string
	// Type is the service type and transport, "_http._tcp" (RFC 6763 §7):
	// an underscore and 1 to 15 letters, digits or hyphens (RFC 6335 §5.1),
	// then "._tcp" or "._udp".
	Type string
	// Host is the name, relative to the zone, of the host that runs the
	// service: the target of the SRV record (RFC 6763 §5). It need not be in
	// Zone.Hosts, but a client can only reach it if it is.
	Host string
	// Port is the port of the SRV record.
	Port uint16
	// TXT are the strings of the TXT record, usually "key=value" (RFC 6763
	// §6.3), each at most 255 bytes. Empty means a single empty string, as
	// RFC 6763 §6.1 requires.
	TXT []string
}

// zoneData is a compiled Zone: every answer pre-packed. It is immutable
// after compileZone; the server swaps whole snapshots atomically.
type zoneData struct {
	// apex is the zone name in wire format, lowered.
	apex []byte
	// names maps every name that exists in the zone, including empty
	// non-terminals (RFC 8020 §2), in lowered wire format, to its answers.
	names map[string]*zoneName
	// nxdomain answers names that do not exist, nodata types a name does
	// not have. Their bodies do not depend on the question: the SOA in the
	// authority section is packed uncompressed.
	nxdomain, nodata packed
	serial           uint32
}

// zoneName holds the answers for one name, by QTYPE, with ANY (RFC 8482 §4:
// a small zone gives all its records) among them when the name has records.
type zoneName struct {
	types []packed
}

// packed is a pre-packed response body: everything after the question.
// Compression pointers in it may point into the question, whose length and
// label layout are the same in every query for the name.
type packed struct {
	qtype      uint16
	rcode      int
	an, ns, ar uint16
	body       []byte
}

func (n *zoneName) lookup(qtype uint16) *packed {
	for i := range n.types {
		if n.types[i].qtype == qtype {
			return &n.types[i]
		}
	}
	return nil
}

// zoneBuild collects the records of every name while a zone is compiled.
type zoneBuild struct {
	apex  string
	ttl   uint32
	names map[string]*nameBuild // by lowered presentation name
}

type nameBuild struct {
	name  string
	rrs   map[uint16][]dns.RR
	extra map[uint16][]dns.RR // additional records (RFC 6763 §12)
}

func (b *zoneBuild) name(n string) *nameBuild {
	k := strings.ToLower(n)
	nb := b.names[k]
	if nb == nil {
		nb = &nameBuild{name: n, rrs: map[uint16][]dns.RR{}, extra: map[uint16][]dns.RR{}}
		b.names[k] = nb
	}
	return nb
}

func (b *zoneBuild) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: b.ttl}
}

func (b *zoneBuild) add(rr dns.RR) {
	h := rr.Header()
	nb := b.name(h.Name)
	nb.rrs[h.Rrtype] = append(nb.rrs[h.Rrtype], rr)
}

// compileZone validates z and packs every answer of the zone apex domain.
func compileZone(domain string, z Zone, serial uint32) (*zoneData, error) {
	ttl := z.TTL
	if ttl == 0 {
		ttl = DefaultZoneTTL
	}
	if ttl < 0 || ttl > 7*24*time.Hour {
		return nil, fmt.Errorf("%w: TTL %v is outside 0..7 days", ErrInvalidZone, z.TTL)
	}
	b := &zoneBuild{apex: domain, ttl: uint32(ttl / time.Second), names: map[string]*nameBuild{}}

	// The apex, as for the locally served zones of RFC 6303 §3: the SOA and
	// the NS name the zone itself, since every box serves it; the SOA
	// minimum is the negative-caching TTL (RFC 2308 §4).
	soa := &dns.SOA{Hdr: b.hdr(domain, dns.TypeSOA), Ns: domain, Mbox: "nobody.invalid.",
		Serial: serial, Refresh: 3600, Retry: 1200, Expire: 604800, Minttl: b.ttl}
	b.add(soa)
	b.add(&dns.NS{Hdr: b.hdr(domain, dns.TypeNS), Ns: domain})
	// Browse domain enumeration (RFC 6763 §11): this zone is the browse
	// domain, the default one and the legacy one.
	for _, l := range []string{"b", "db", "lb"} {
		b.add(&dns.PTR{Hdr: b.hdr(l+"._dns-sd._udp."+domain, dns.TypePTR), Ptr: domain})
	}

	hosts := map[string]int{}
	for i, h := range z.Hosts {
		name, err := hostName(h.Name)
		if err != nil {
			return nil, fmt.Errorf("%w: Hosts[%d].Name: %w", ErrInvalidZone, i, err)
		}
		if j, ok := hosts[name]; ok {
			return nil, fmt.Errorf("%w: Hosts[%d].Name %q is also Hosts[%d]", ErrInvalidZone, i, h.Name, j)
		}
		hosts[name] = i
		fqdn := name + "." + domain
		if len(fqdn) > 253 {
			return nil, fmt.Errorf("%w: Hosts[%d].Name %q is too long", ErrInvalidZone, i, h.Name)
		}
		b.name(fqdn)
		for j, a := range h.Addrs {
			a = a.Unmap()
			switch {
			case a.Is4():
				b.add(&dns.A{Hdr: b.hdr(fqdn, dns.TypeA), A: a.AsSlice()})
			case a.Is6():
				b.add(&dns.AAAA{Hdr: b.hdr(fqdn, dns.TypeAAAA), AAAA: a.AsSlice()})
			default:
				return nil, fmt.Errorf("%w: Hosts[%d].Addrs[%d] is not an address", ErrInvalidZone, i, j)
			}
		}
	}

	type instKey struct{ typ, inst string }
	seen := map[instKey]int{}
	var types []string
	for i, s := range z.Services {
		typ, err := serviceType(s.Type)
		if err != nil {
			return nil, fmt.Errorf("%w: Services[%d].Type: %w", ErrInvalidZone, i, err)
		}
		if err := checkInstance(s.Instance); err != nil {
			return nil, fmt.Errorf("%w: Services[%d].Instance: %w", ErrInvalidZone, i, err)
		}
		host, err := hostName(s.Host)
		if err != nil {
			return nil, fmt.Errorf("%w: Services[%d].Host: %w", ErrInvalidZone, i, err)
		}
		k := instKey{typ, strings.ToLower(escapeLabel(s.Instance))} // ASCII case only (RFC 4343)
		if j, ok := seen[k]; ok {
			return nil, fmt.Errorf("%w: Services[%d] %q %s is also Services[%d]", ErrInvalidZone, i, s.Instance, typ, j)
		}
		seen[k] = i
		txt := s.TXT
		if len(txt) == 0 {
			txt = []string{""}
		}
		size := 0
		for j, t := range txt {
			if len(t) > 255 {
				return nil, fmt.Errorf("%w: Services[%d].TXT[%d] is longer than 255 bytes", ErrInvalidZone, i, j)
			}
			size += 1 + len(t)
		}
		if size > 8192 {
			return nil, fmt.Errorf("%w: Services[%d].TXT is longer than 8192 bytes", ErrInvalidZone, i)
		}
		typeName := typ + "." + domain
		instName := escapeLabel(s.Instance) + "." + typeName
		target := host + "." + domain
		if _, ok := dns.IsDomainName(instName); !ok || len(target) > 253 {
			return nil, fmt.Errorf("%w: Services[%d] makes a name longer than 255 bytes", ErrInvalidZone, i)
		}
		if !slices.Contains(types, typeName) {
			types = append(types, typeName)
		}
		escaped := make([]string, len(txt))
		for j, t := range txt {
			escaped[j] = escapeTXT(t)
		}
		// RFC 6763 §4.1 (PTR), §5 (SRV: priority and weight 0, RFC 2782),
		// §6 (TXT).
		b.add(&dns.PTR{Hdr: b.hdr(typeName, dns.TypePTR), Ptr: instName})
		b.add(&dns.SRV{Hdr: b.hdr(instName, dns.TypeSRV), Port: s.Port, Target: target})
		b.add(&dns.TXT{Hdr: b.hdr(instName, dns.TypeTXT), Txt: escaped})
	}
	// Service type enumeration (RFC 6763 §9).
	for _, t := range types {
		b.add(&dns.PTR{Hdr: b.hdr("_services._dns-sd._udp."+domain, dns.TypePTR), Ptr: t})
	}
	b.additionals()
	return b.pack(soa, serial)
}

// additionals adds the records RFC 6763 §12 recommends: for a PTR to an
// instance its SRV and TXT and the SRV target's addresses (§12.1), for an
// SRV the target's addresses (§12.2).
func (b *zoneBuild) additionals() {
	addrs := func(target string) []dns.RR {
		t := b.names[strings.ToLower(target)]
		if t == nil {
			return nil
		}
		return append(slices.Clone(t.rrs[dns.TypeA]), t.rrs[dns.TypeAAAA]...)
	}
	for _, nb := range b.names {
		for _, rr := range nb.rrs[dns.TypeSRV] {
			nb.extra[dns.TypeSRV] = append(nb.extra[dns.TypeSRV], addrs(rr.(*dns.SRV).Target)...)
		}
		for _, rr := range nb.rrs[dns.TypePTR] {
			inst := b.names[strings.ToLower(rr.(*dns.PTR).Ptr)]
			if inst == nil || len(inst.rrs[dns.TypeSRV]) == 0 {
				continue
			}
			x := nb.extra[dns.TypePTR]
			x = append(x, inst.rrs[dns.TypeSRV]...)
			x = append(x, inst.rrs[dns.TypeTXT]...)
			for _, srv := range inst.rrs[dns.TypeSRV] {
				for _, a := range addrs(srv.(*dns.SRV).Target) {
					if !slices.ContainsFunc(x, func(o dns.RR) bool { return dns.IsDuplicate(o, a) }) {
						x = append(x, a)
					}
				}
			}
			nb.extra[dns.TypePTR] = x
		}
	}
}

// pack turns the collected records into pre-packed answers.
func (b *zoneBuild) pack(soa *dns.SOA, serial uint32) (*zoneData, error) {
	apex, err := wireName(b.apex)
	if err != nil {
		return nil, fmt.Errorf("%w: domain %q: %w", ErrInvalidZone, b.apex, err)
	}
	zd := &zoneData{apex: apex, names: make(map[string]*zoneName, len(b.names)*2), serial: serial}

	// Negative answers: the SOA in the authority section (RFC 2308 §2.1,
	// §2.2), its TTL the negative TTL (RFC 2308 §3), packed without
	// compression so that the body fits every question.
	neg := func(rcode int) (packed, error) {
		m := new(dns.Msg)
		m.Ns = []dns.RR{soa}
		body, err := packBody(m, "invalid.", dns.TypeA, false)
		return packed{rcode: rcode, ns: 1, body: body}, err
	}
	if zd.nxdomain, err = neg(rcodeNXDomain); err != nil {
		return nil, err
	}
	if zd.nodata, err = neg(rcodeSuccess); err != nil {
		return nil, err
	}

	keys := make([]string, 0, len(b.names))
	for k := range b.names {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		nb := b.names[k]
		w, err := wireName(nb.name)
		if err != nil {
			return nil, fmt.Errorf("%w: name %q: %w", ErrInvalidZone, nb.name, err)
		}
		lw := string(appendLower(nil, w))
		zn := &zoneName{}
		var all []dns.RR
		rrtypes := make([]uint16, 0, len(nb.rrs))
		for t := range nb.rrs {
			rrtypes = append(rrtypes, t)
		}
		slices.Sort(rrtypes)
		for _, t := range rrtypes {
			rrs := nb.rrs[t]
			if len(rrs) == 0 {
				continue
			}
			all = append(all, rrs...)
			m := new(dns.Msg)
			m.Answer = rrs
			m.Extra = nb.extra[t]
			body, err := packBody(m, nb.name, t, true)
			if err != nil {
				return nil, fmt.Errorf("%w: packing %s %s: %w", ErrInvalidZone, nb.name, dns.TypeToString[t], err)
			}
			zn.types = append(zn.types, packed{qtype: t, an: uint16(len(m.Answer)), ar: uint16(len(m.Extra)), body: body})
		}
		if len(all) > 0 {
			m := new(dns.Msg)
			m.Answer = all
			body, err := packBody(m, nb.name, dns.TypeANY, true)
			if err != nil {
				return nil, fmt.Errorf("%w: packing %s ANY: %w", ErrInvalidZone, nb.name, err)
			}
			zn.types = append(zn.types, packed{qtype: typeANY, an: uint16(len(all)), body: body})
		}
		zd.names[lw] = zn
		// Empty non-terminals exist (RFC 8020 §2): NODATA, not NXDOMAIN.
		for n := w; len(n) > len(apex); n = n[1+int(n[0]):] {
			l := string(appendLower(nil, n))
			if _, ok := zd.names[l]; !ok {
				zd.names[l] = &zoneName{}
			}
		}
	}
	return zd, nil
}

// packBody packs m with the question (name, qtype, IN) and returns what
// follows the question.
func packBody(m *dns.Msg, name string, qtype uint16, compress bool) ([]byte, error) {
	m.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}
	m.Compress = compress
	w, err := m.Pack()
	if err != nil {
		return nil, err
	}
	end, err := skipName(w, headerLen)
	if err != nil {
		return nil, err
	}
	return w[end+4:], nil
}

// wireName packs a presentation-format name.
func wireName(name string) ([]byte, error) {
	buf := make([]byte, maxNameLen+1)
	n, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// hostName checks a relative host name (RFC 1123 §2.1: letters, digits and
// hyphens) and lowers it.
func hostName(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty name")
	}
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	for l := range strings.SplitSeq(s, ".") {
		if l == "" || len(l) > maxLabelLen {
			return "", fmt.Errorf("%q has an empty or too long label", s)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return "", fmt.Errorf("%q has %q: only letters, digits and hyphens are allowed", s, c)
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("%q has a label that starts or ends with a hyphen", s)
		}
	}
	return s, nil
}

// serviceType checks a DNS-SD service type "_name._tcp" and lowers it.
func serviceType(s string) (string, error) {
	s = strings.ToLower(s)
	name, proto, ok := strings.Cut(s, ".")
	if !ok || proto != "_tcp" && proto != "_udp" {
		return "", fmt.Errorf("%q is not _service._tcp or _service._udp", s)
	}
	n, ok := strings.CutPrefix(name, "_")
	if !ok || len(n) == 0 || len(n) > 15 {
		return "", fmt.Errorf("%q: the service name must be an underscore and 1 to 15 characters", s)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return "", fmt.Errorf("%q has %q: only letters, digits and hyphens are allowed", s, c)
		}
	}
	return s, nil
}

// checkInstance checks an instance name (RFC 6763 §4.1.1): 1 to 63 bytes of
// UTF-8 without control characters.
func checkInstance(s string) error {
	if s == "" || len(s) > maxLabelLen {
		return fmt.Errorf("%q is not 1 to 63 bytes", s)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%q is not UTF-8", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%q has a control character", s)
		}
	}
	return nil
}

// escapeLabel writes one label in presentation format (RFC 1035 §5.1):
// letters, digits, hyphens and underscores as they are, every other byte as
// \DDD, so that dots, spaces and UTF-8 stay inside the label.
func escapeLabel(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "\\%03d", c)
	}
	return b.String()
}

// escapeTXT writes a character-string as miekg/dns expects it in a TXT
// record: backslashes, quotes and bytes outside printable ASCII escaped.
func escapeTXT(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
