package proxy

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"sort"
)

// Stats is a snapshot of a gateway's state, for the API and the panel.
type Stats struct {
	ConnsActive   int64       `json:"conns_active"`
	ConnsTotal    uint64      `json:"conns_total"`
	ConnsRefused  uint64      `json:"conns_refused"` // source not allowed or MaxConns reached
	Requests      uint64      `json:"requests"`      // HTTP requests forwarded
	Tunnels       uint64      `json:"tunnels"`       // CONNECT and SOCKS5 tunnels opened
	TunnelsActive int64       `json:"tunnels_active"`
	AuthFailures  uint64      `json:"auth_failures"`
	Denied        uint64      `json:"denied"`         // destinations refused by the rules
	LimitRefused  uint64      `json:"limit_refused"`  // per-user connection limit reached
	QuotaExceeded uint64      `json:"quota_exceeded"` // transfers cut by the daily quota
	BadRequests   uint64      `json:"bad_requests"`
	UpstreamErrs  uint64      `json:"upstream_errors"`
	BytesUp       uint64      `json:"bytes_up"`   // client to destination
	BytesDown     uint64      `json:"bytes_down"` // destination to client
	Users         []UserStats `json:"users"`
}

// UserStats is one user's share of the gateway. The anonymous user (no
// authentication) has an empty User and Box.
type UserStats struct {
	User       string `json:"user"`
	Box        string `json:"box"`
	Conns      int    `json:"conns"`
	Requests   uint64 `json:"requests"`
	BytesUp    uint64 `json:"bytes_up"`
	BytesDown  uint64 `json:"bytes_down"`
	QuotaUsed  int64  `json:"quota_used"`  // bytes today
	QuotaLimit int64  `json:"quota_limit"` // 0: no quota
}

// Stats returns the current counters and every user seen in the last day,
// sorted by box and user.
func (p *Proxy) Stats() Stats {
	s := Stats{
		ConnsActive:   p.connsActive.Load(),
		ConnsTotal:    p.connsTotal.Load(),
		ConnsRefused:  p.connsRefused.Load(),
		Requests:      p.requests.Load(),
		Tunnels:       p.tunnels.Load(),
		TunnelsActive: p.tunnelsActive.Load(),
		AuthFailures:  p.authFailures.Load(),
		Denied:        p.denied.Load(),
		LimitRefused:  p.limitRefused.Load(),
		QuotaExceeded: p.quotaExceeded.Load(),
		BadRequests:   p.badRequests.Load(),
		UpstreamErrs:  p.upstreamErrs.Load(),
		BytesUp:       p.bytes[up].Load(),
		BytesDown:     p.bytes[down].Load(),
	}
	now := p.cfg.Now()
	p.usersMu.Lock()
	for _, u := range p.users {
		s.Users = append(s.Users, UserStats{
			User:       u.name,
			Box:        u.box,
			Conns:      int(u.conns.Load()),
			Requests:   u.requests.Load(),
			BytesUp:    u.bytes[up].Load(),
			BytesDown:  u.bytes[down].Load(),
			QuotaUsed:  u.quotaUsed(now),
			QuotaLimit: p.cfg.UserDailyQuota,
		})
	}
	p.usersMu.Unlock()
	order := func(a, b UserStats) int {
		return cmp.Or(cmp.Compare(a.Box, b.Box), cmp.Compare(a.User, b.User))
	}
	sort.Slice(s.Users, func(i, j int) bool { return order(s.Users[i], s.Users[j]) < 0 })
	return s
}

// WriteMetrics writes the counters in the Prometheus text format (version
// 0.0.4), every name prefixed with cloudbox_proxy_. Users are not labels:
// the API has them, metrics stay small and private.
func (p *Proxy) WriteMetrics(w io.Writer) error {
	s := p.Stats()
	bw := bufio.NewWriter(w)
	metric := func(name, typ, help string, v any) {
		fmt.Fprintf(bw, "# HELP cloudbox_proxy_%s %s\n# TYPE cloudbox_proxy_%s %s\ncloudbox_proxy_%s %v\n", name, help, name, typ, name, v)
	}
	metric("connections_active", "gauge", "Client connections open.", s.ConnsActive)
	metric("connections_total", "counter", "Client connections accepted.", s.ConnsTotal)
	metric("connections_refused_total", "counter", "Client connections closed at accept (source not allowed or too many).", s.ConnsRefused)
	metric("requests_total", "counter", "HTTP requests forwarded.", s.Requests)
	metric("tunnels_total", "counter", "CONNECT and SOCKS5 tunnels opened.", s.Tunnels)
	metric("tunnels_active", "gauge", "Tunnels open.", s.TunnelsActive)
	metric("auth_failures_total", "counter", "Requests with missing or refused credentials.", s.AuthFailures)
	metric("denied_total", "counter", "Requests refused by the destination rules.", s.Denied)
	metric("limit_refused_total", "counter", "Requests refused by the per-user connection limit.", s.LimitRefused)
	metric("quota_exceeded_total", "counter", "Transfers cut by the daily quota.", s.QuotaExceeded)
	metric("bad_requests_total", "counter", "Malformed requests.", s.BadRequests)
	metric("upstream_errors_total", "counter", "Destinations that could not be reached or timed out.", s.UpstreamErrs)
	fmt.Fprintf(bw, "# HELP cloudbox_proxy_bytes_total Bytes relayed, by direction.\n# TYPE cloudbox_proxy_bytes_total counter\n")
	fmt.Fprintf(bw, "cloudbox_proxy_bytes_total{direction=\"up\"} %d\ncloudbox_proxy_bytes_total{direction=\"down\"} %d\n", s.BytesUp, s.BytesDown)
	metric("users", "gauge", "Users seen in the last day.", len(s.Users))
	return bw.Flush()
}
