package dnsproxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DefaultDomain is the community zone when Config.Domain is empty. It is
// under home.arpa., which RFC 8375 §3 reserves for names that are only
// meaningful inside a home network, and which resolvers treat as locally
// served (RFC 8375 §4–5): it cannot collide with a name in the public DNS,
// unlike an invented TLD, and it is not .local, which belongs to mDNS
// (RFC 6762 §3). The root zone delegates home.arpa. without DNSSEC
// (RFC 8375 §6), so validating stub resolvers accept our unsigned answers,
// which they would not for an undelegated name such as .internal.
const DefaultDomain = "cb.home.arpa."

// Defaults for the zero values of Config.
const (
	DefaultListen          = "127.0.0.1:53"
	DefaultRateLimit       = 200 // queries per second per client
	DefaultRateBurst       = 400
	DefaultMaxUDPSize      = 1232 // RFC 9715 §3 (DNS flag day 2020)
	DefaultMaxPending      = 1024
	DefaultMaxTCPConns     = 256
	DefaultCacheSize       = 10000
	DefaultMaxTTL          = 24 * time.Hour
	DefaultMaxNegativeTTL  = time.Hour
	DefaultStaleFor        = 24 * time.Hour
	DefaultPrefetchHits    = 3
	DefaultMaxPrefetches   = 8
	DefaultUpstreamTimeout = 1500 * time.Millisecond
	DefaultTCPIdleTimeout  = 10 * time.Second
	// staleTTL is the TTL of an answer served stale (RFC 8767 §4 and §5:
	// 30 seconds).
	staleTTL = 30
	// staleRecheck is how long stale answers are served without asking the
	// upstreams again after a failed refresh (RFC 8767 §5, the "failure
	// recheck timer").
	staleRecheck = 30 * time.Second
	// resolveTimeout bounds one resolution over all upstreams, below the 5
	// second timeout of common stub resolvers.
	resolveTimeout = 4 * time.Second
)

// DefaultAllowedNets are the clients answered when Config.AllowedNets is
// empty: loopback, RFC 1918 private networks, RFC 6598 shared address space
// (100.64.0.0/10, used by carrier-grade NAT and by mesh overlays), IPv4 and
// IPv6 link-local (RFC 3927, RFC 4291 §2.5.6), and IPv6 unique local
// addresses (RFC 4193).
var DefaultAllowedNets = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("fc00::/7"),
}

// Config configures a Server. The zero value serves the default community
// zone on DefaultListen (UDP and TCP) to local clients, without forwarding.
// A Config must not be modified after it is passed to New.
type Config struct {
	// Logger receives the server's events (listening, stopping, upstream
	// failures). Nil discards them. Per-query events are counted in Metrics,
	// never logged.
	Logger *slog.Logger

	// Listen lists the addresses ("192.168.1.2:53", "[fd00::1]:53") to serve
	// on, each with UDP and TCP. Port 0 picks a free port; Server.Addrs
	// reports the bound addresses. Replies leave from the address the
	// socket is bound to, so list specific addresses, not "0.0.0.0:53", on a
	// host with several. Zero means DefaultListen. Ignored if PacketConns or
	// Listeners is set.
	Listen []string

	// PacketConns and Listeners, if either is not empty, are served instead
	// of listening on Listen: each PacketConn with UDP semantics, each
	// Listener with DNS over TCP (RFC 7766). Run closes them all before
	// it returns, also when it fails.
	PacketConns []net.PacketConn
	Listeners   []net.Listener

	// Domain is the community zone, absolute ("cb.home.arpa."); a missing
	// final dot is added. Zero means DefaultDomain.
	Domain string

	// Zone is the zone content served until the first SetZone. Zero is an
	// empty zone: only the SOA, the NS and the DNS-SD browse domain.
	Zone Zone

	// Upstreams are the resolvers, IP addresses with an optional port
	// ("192.168.1.1", "192.168.1.1:5353", "[2001:db8::1]:53"; the default
	// port is 53), queries outside Domain are forwarded to, in
	// order of preference: a failed one (timeout, network error, SERVFAIL,
	// REFUSED) is skipped and the last one that answered is tried first.
	// Zero means no forwarding: such queries get REFUSED.
	Upstreams []string

	// AllowedNets are the client networks that get answers, for the zone
	// and from the upstreams; everyone else gets REFUSED. Zero means
	// DefaultAllowedNets.
	AllowedNets []netip.Prefix

	// RateLimit is the number of queries per second each client may send,
	// with bursts up to RateBurst; queries beyond it are dropped (counted
	// as RateLimited). IPv6 clients are limited per /64. Loopback clients
	// are never limited. Zero means DefaultRateLimit; negative turns the
	// limit off. RateBurst zero means DefaultRateBurst.
	RateLimit float64
	RateBurst int

	// MaxUDPSize is the largest UDP response sent, and the payload size
	// advertised in EDNS(0) (RFC 6891 §6.2.5); larger answers are truncated
	// with the TC bit so that the client retries over TCP. Zero means
	// DefaultMaxUDPSize; the range is 512 to 4096.
	MaxUDPSize int

	// Workers is the number of goroutines reading each UDP socket. Zero
	// means GOMAXPROCS.
	Workers int

	// MaxPending bounds the UDP queries waiting for an upstream at once;
	// queries beyond it are dropped (counted as Dropped). Zero means
	// DefaultMaxPending.
	MaxPending int

	// MaxTCPConns bounds the open TCP connections; connections beyond it
	// are closed at once (counted as Dropped). Zero means
	// DefaultMaxTCPConns.
	MaxTCPConns int

	// TCPIdleTimeout closes a TCP connection that sends no query for that
	// long (RFC 7766 §6.2.3). Zero means DefaultTCPIdleTimeout.
	TCPIdleTimeout time.Duration

	// CacheSize is the number of answers kept from the upstreams. Zero
	// means DefaultCacheSize; negative turns the cache off (and with it
	// prefetching and serve-stale).
	CacheSize int

	// MaxTTL caps how long a positive answer is cached and the TTLs given
	// to clients; MaxNegativeTTL does the same for NXDOMAIN and NODATA
	// (RFC 2308 §5). Zero means DefaultMaxTTL and DefaultMaxNegativeTTL.
	MaxTTL         time.Duration
	MaxNegativeTTL time.Duration

	// StaleFor is how long past its expiry an answer is kept to be served,
	// with a TTL of 30 seconds, when no upstream answers (RFC 8767 §4).
	// Zero means DefaultStaleFor; negative turns serve-stale off.
	StaleFor time.Duration

	// PrefetchHits is the number of hits after which a cached answer is
	// refreshed in the background when a hit comes in the last tenth of its
	// TTL, so that popular names never expire. At most MaxPrefetches
	// refreshes run at once. Zero means DefaultPrefetchHits and
	// DefaultMaxPrefetches; negative PrefetchHits turns prefetching off.
	PrefetchHits  int
	MaxPrefetches int

	// UpstreamTimeout bounds one query to one upstream. Zero means
	// DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration

	// Dial connects to an upstream, with network "udp" or "tcp". Nil means
	// a net.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	// Now is the clock for TTLs and rate limits. Nil means time.Now.
	Now func() time.Time
}

// withDefaults returns c with the zero values replaced, or an error naming
// the first field that cannot be used.
func (c Config) withDefaults() (Config, error) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(c.Listen) == 0 {
		c.Listen = []string{DefaultListen}
	}
	if c.Domain == "" {
		c.Domain = DefaultDomain
	}
	c.Domain = dns.CanonicalName(c.Domain)
	if _, ok := dns.IsDomainName(c.Domain); !ok || c.Domain == "." {
		return c, fmt.Errorf("%w: Domain %q is not a domain name", ErrInvalidConfig, c.Domain)
	}
	ups := make([]string, 0, len(c.Upstreams))
	for i, u := range c.Upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil {
			u = net.JoinHostPort(strings.Trim(u, "[]"), "53")
		}
		// An IP address: resolving a name for the resolver could ask us.
		if _, err := netip.ParseAddrPort(u); err != nil {
			return c, fmt.Errorf("%w: Upstreams[%d] %q is not an IP address with an optional port", ErrInvalidConfig, i, c.Upstreams[i])
		}
		ups = append(ups, u)
	}
	c.Upstreams = ups
	nets := c.AllowedNets
	if len(nets) == 0 {
		nets = DefaultAllowedNets
	}
	c.AllowedNets = make([]netip.Prefix, len(nets))
	for i, p := range nets {
		if !p.IsValid() {
			return c, fmt.Errorf("%w: AllowedNets[%d] is not a valid prefix", ErrInvalidConfig, i)
		}
		c.AllowedNets[i] = p.Masked()
	}
	if c.RateLimit == 0 {
		c.RateLimit = DefaultRateLimit
	}
	if c.RateBurst == 0 {
		c.RateBurst = DefaultRateBurst
	}
	if c.RateBurst < 0 {
		return c, fmt.Errorf("%w: RateBurst %d is negative", ErrInvalidConfig, c.RateBurst)
	}
	if c.MaxUDPSize == 0 {
		c.MaxUDPSize = DefaultMaxUDPSize
	}
	if c.MaxUDPSize < minUDPSize || c.MaxUDPSize > 4096 {
		return c, fmt.Errorf("%w: MaxUDPSize %d is outside 512..4096", ErrInvalidConfig, c.MaxUDPSize)
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.MaxTCPConns <= 0 {
		c.MaxTCPConns = DefaultMaxTCPConns
	}
	if c.TCPIdleTimeout <= 0 {
		c.TCPIdleTimeout = DefaultTCPIdleTimeout
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.MaxTTL <= 0 {
		c.MaxTTL = DefaultMaxTTL
	}
	if c.MaxNegativeTTL <= 0 {
		c.MaxNegativeTTL = DefaultMaxNegativeTTL
	}
	if c.StaleFor == 0 {
		c.StaleFor = DefaultStaleFor
	}
	if c.PrefetchHits == 0 {
		c.PrefetchHits = DefaultPrefetchHits
	}
	if c.MaxPrefetches <= 0 {
		c.MaxPrefetches = DefaultMaxPrefetches
	}
	if c.UpstreamTimeout <= 0 {
		c.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}
