package appliance

import (
	"bytes"
	"net/http"
	"net/netip"
)

// dnsSource is what the handler shows of DNS; *dnsService implements it.
type dnsSource interface {
	view() dnsView
}

// dnsResponse is the body of GET /api/v1/dns.
type dnsResponse struct {
	Enabled   bool      `json:"enabled"`
	Error     string    `json:"error,omitempty"`
	Domain    string    `json:"domain,omitempty"`
	Listen    []string  `json:"listen"`
	Upstreams []string  `json:"upstreams"`
	Hosts     []dnsHost `json:"hosts"`
	Stats     dnsStats  `json:"stats"`
}

type dnsHost struct {
	Name  string       `json:"name"`
	Addrs []netip.Addr `json:"addrs"`
}

type dnsStats struct {
	Queries      uint64 `json:"queries"`
	ZoneAnswers  uint64 `json:"zone_answers"`
	CacheHits    uint64 `json:"cache_hits"`
	CacheMisses  uint64 `json:"cache_misses"`
	StaleServed  uint64 `json:"stale_served"`
	Upstream     uint64 `json:"upstream_queries"`
	UpstreamErr  uint64 `json:"upstream_errors"`
	ServFail     uint64 `json:"servfail"`
	Refused      uint64 `json:"refused"`
	RateLimited  uint64 `json:"rate_limited"`
	Malformed    uint64 `json:"malformed"`
	Dropped      uint64 `json:"dropped"`
	CacheEntries int    `json:"cache_entries"`
}

func (h *handler) dnsInfo(w http.ResponseWriter, r *http.Request) {
	resp := dnsResponse{Listen: []string{}, Upstreams: []string{}, Hosts: []dnsHost{}}
	if h.cfg.dns != nil {
		v := h.cfg.dns.view()
		resp.Enabled, resp.Error, resp.Domain = v.Enabled, v.Problem, v.Domain
		resp.Listen = append(resp.Listen, v.Listen...)
		resp.Upstreams = append(resp.Upstreams, v.Upstreams...)
		for _, host := range v.Hosts {
			resp.Hosts = append(resp.Hosts, dnsHost{Name: host.Name + "." + v.Domain, Addrs: host.Addrs})
		}
		m := v.Metrics
		resp.Stats = dnsStats{
			Queries: m.Queries, ZoneAnswers: m.ZoneAnswers, CacheHits: m.CacheHits, CacheMisses: m.CacheMisses,
			StaleServed: m.StaleServed, Upstream: m.UpstreamQueries, UpstreamErr: m.UpstreamErrors,
			ServFail: m.ServFail, Refused: m.Refused, RateLimited: m.RateLimited, Malformed: m.Malformed,
			Dropped: m.Dropped, CacheEntries: m.CacheEntries,
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// writeDNSMetrics writes the DNS server's counters.
func writeDNSMetrics(b *bytes.Buffer, v dnsView) {
	if !v.Enabled {
		return
	}
	m := v.Metrics
	writeFamily(b, "cloudbox_dns_queries_total", "counter", "DNS queries received, by how they were answered.",
		sample{[]string{"result", "zone"}, float64(m.ZoneAnswers)},
		sample{[]string{"result", "cache_hit"}, float64(m.CacheHits)},
		sample{[]string{"result", "cache_miss"}, float64(m.CacheMisses)},
		sample{[]string{"result", "stale"}, float64(m.StaleServed)},
		sample{[]string{"result", "servfail"}, float64(m.ServFail)},
		sample{[]string{"result", "refused"}, float64(m.Refused)})
	writeFamily(b, "cloudbox_dns_dropped_total", "counter", "DNS queries dropped, by reason.",
		sample{[]string{"reason", "rate_limited"}, float64(m.RateLimited)},
		sample{[]string{"reason", "malformed"}, float64(m.Malformed)},
		sample{[]string{"reason", "overload"}, float64(m.Dropped)})
	writeMetric(b, "cloudbox_dns_upstream_queries_total", "counter", "Queries sent to the upstream resolvers.", float64(m.UpstreamQueries))
	writeMetric(b, "cloudbox_dns_upstream_errors_total", "counter", "Upstream queries that failed.", float64(m.UpstreamErrors))
	writeMetric(b, "cloudbox_dns_cache_entries", "gauge", "Answers in the DNS cache.", float64(m.CacheEntries))
	writeMetric(b, "cloudbox_dns_zone_hosts", "gauge", "Names in the community zone.", float64(len(v.Hosts)))
}
