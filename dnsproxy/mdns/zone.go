package mdns

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// TTLs of RFC 6762 §10: records that carry a host name (A, AAAA, SRV and
// the reverse PTRs) 120 s, the others 75 minutes.
const (
	hostTTL  = 120
	otherTTL = 4500
)

// record is one resource record the responder answers with.
type record struct {
	// rr has class IN and the full TTL; it is never modified after
	// buildZone (answers are copies).
	rr dns.RR
	// unique records belong to this responder alone and are sent with the
	// cache-flush bit (RFC 6762 §10.2); shared ones are the PTRs.
	unique bool
	// key identifies the record: owner name, type and data.
	key string
}

// zone is every record the responder owns, built anew on each change.
type zone struct {
	records []*record
	byName  map[string][]*record // canonical owner name
	// instances and hosts are the canonical service instance names and
	// host names advertised, which the browser does not report as found.
	instances map[string]bool
	hosts     map[string]bool
}

// rrKey identifies a record by owner name, type and data (not class or
// TTL): two records with equal keys are the same record (RFC 6762 §6).
func rrKey(rr dns.RR) string {
	h := rr.Header()
	var data string
	switch v := rr.(type) {
	case *dns.A:
		data = v.A.String()
	case *dns.AAAA:
		data = v.AAAA.String()
	case *dns.PTR:
		data = canon(v.Ptr)
	case *dns.SRV:
		data = fmt.Sprintf("%d %d %d %s", v.Priority, v.Weight, v.Port, canon(v.Target))
	case *dns.TXT:
		data = strings.Join(v.Txt, "\x00")
	default:
		data = strings.TrimPrefix(rr.String(), h.String())
	}
	return canon(h.Name) + "\x00" + strconv.Itoa(int(h.Rrtype)) + "\x00" + data
}

func hdr(name string, rrtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}

// addrRecord returns the A or AAAA record of name for a.
func addrRecord(name string, a netip.Addr) dns.RR {
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return &dns.A{Hdr: hdr(name, dns.TypeA, hostTTL), A: net.IP(a.AsSlice())}
	}
	return &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA, hostTTL), AAAA: net.IP(a.AsSlice())}
}

// usableAddr reports whether a may be announced on the LAN.
func usableAddr(a netip.Addr) bool {
	return a.IsValid() && !a.IsLoopback() && !a.IsUnspecified() && !a.IsMulticast()
}

// buildZone returns the records for host ("<Hostname>.local.") with addrs
// and for services. Services that cannot be advertised are left out and
// returned as errors naming them.
func buildZone(host string, addrs []netip.Addr, services []Service) (*zone, []error) {
	z := &zone{byName: map[string][]*record{}, instances: map[string]bool{}, hosts: map[string]bool{canon(host): true}}
	seen := map[string]bool{}
	add := func(rr dns.RR, unique bool) {
		k := rrKey(rr)
		if seen[k] {
			return
		}
		seen[k] = true
		r := &record{rr: rr, unique: unique, key: k}
		z.records = append(z.records, r)
		n := canon(rr.Header().Name)
		z.byName[n] = append(z.byName[n], r)
	}
	for _, a := range addrs {
		if !usableAddr(a) {
			continue
		}
		add(addrRecord(host, a), true)
		if rev, err := dns.ReverseAddr(a.Unmap().WithZone("").String()); err == nil {
			add(&dns.PTR{Hdr: hdr(rev, dns.TypePTR, hostTTL), Ptr: host}, true)
		}
	}
	var errs []error
	owner := map[string]string{} // canonical instance name -> SRV key, to refuse duplicates
	for _, s := range services {
		if err := checkService(s); err != nil {
			errs = append(errs, err)
			continue
		}
		typeName := s.Type + "." + local
		inst := escapeLabel(s.Instance) + "." + typeName
		target := host
		if s.Host != "" {
			target = s.Host + "." + local
			if canon(target) == canon(host) {
				errs = append(errs, fmt.Errorf("service %q %s: Host %q is this box's own name", s.Instance, s.Type, s.Host))
				continue
			}
		}
		srv := &dns.SRV{Hdr: hdr(inst, dns.TypeSRV, hostTTL), Port: s.Port, Target: target}
		if k, dup := owner[canon(inst)]; dup {
			if k != rrKey(srv) {
				errs = append(errs, fmt.Errorf("service %q %s: another service has the same name", s.Instance, s.Type))
			}
			continue
		}
		owner[canon(inst)] = rrKey(srv)
		txt := make([]string, 0, len(s.TXT))
		for _, t := range s.TXT {
			txt = append(txt, escapeTXT(t))
		}
		if len(txt) == 0 {
			txt = []string{""}
		}
		add(&dns.PTR{Hdr: hdr(servicesName, dns.TypePTR, otherTTL), Ptr: typeName}, false)
		add(&dns.PTR{Hdr: hdr(typeName, dns.TypePTR, otherTTL), Ptr: inst}, false)
		add(srv, true)
		add(&dns.TXT{Hdr: hdr(inst, dns.TypeTXT, otherTTL), Txt: txt}, true)
		z.instances[canon(inst)] = true
		if s.Host != "" {
			z.hosts[canon(target)] = true
			for _, a := range s.Addrs {
				if usableAddr(a) {
					add(addrRecord(target, a), true)
				}
			}
		}
	}
	return z, errs
}

// checkService returns why s cannot be advertised, or nil.
func checkService(s Service) error {
	switch {
	case s.Instance == "" || len(s.Instance) > 63:
		return fmt.Errorf("service %q %s: Instance must be 1 to 63 bytes", s.Instance, s.Type)
	case !validServiceType(s.Type):
		return fmt.Errorf("service %q: Type %q is not _name._tcp or _name._udp", s.Instance, s.Type)
	case s.Host != "" && !validHostLabels(s.Host):
		return fmt.Errorf("service %q %s: Host %q is not a host name", s.Instance, s.Type, s.Host)
	case s.Host != "" && !slices.ContainsFunc(s.Addrs, usableAddr):
		return fmt.Errorf("service %q %s: Host %q has no usable address", s.Instance, s.Type, s.Host)
	}
	for _, t := range s.TXT {
		if len(t) > 255 {
			return fmt.Errorf("service %q %s: a TXT string is longer than 255 bytes", s.Instance, s.Type)
		}
	}
	return nil
}

// match returns the records at name of type qtype (or every type for ANY).
func (z *zone) match(name string, qtype uint16) []*record {
	var out []*record
	for _, r := range z.byName[canon(name)] {
		if qtype == dns.TypeANY || r.rr.Header().Rrtype == qtype {
			out = append(out, r)
		}
	}
	return out
}

// additionals returns the records that RFC 6763 §12 and RFC 6762 §12 put
// in the additional section for answers: for a service PTR the instance's
// SRV and TXT and the target's addresses, for an SRV the target's
// addresses, for an address record the host's other addresses. Records
// among the answers are left out.
func (z *zone) additionals(answers []*record) []*record {
	in := map[string]bool{}
	for _, r := range answers {
		in[r.key] = true
	}
	var out []*record
	addAll := func(rs []*record, types ...uint16) {
		for _, r := range rs {
			if !in[r.key] && slices.Contains(types, r.rr.Header().Rrtype) {
				in[r.key] = true
				out = append(out, r)
			}
		}
	}
	for _, r := range answers {
		switch v := r.rr.(type) {
		case *dns.PTR:
			rs := z.byName[canon(v.Ptr)]
			addAll(rs, dns.TypeSRV, dns.TypeTXT)
			for _, s := range rs {
				if srv, ok := s.rr.(*dns.SRV); ok {
					addAll(z.byName[canon(srv.Target)], dns.TypeA, dns.TypeAAAA)
				}
			}
		case *dns.SRV:
			addAll(z.byName[canon(v.Target)], dns.TypeA, dns.TypeAAAA)
		case *dns.A, *dns.AAAA:
			addAll(z.byName[canon(v.Header().Name)], dns.TypeA, dns.TypeAAAA)
		}
	}
	return out
}
