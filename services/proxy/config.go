package proxy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// Federation says whose users a gateway serves.
type Federation int

const (
	// FederateCommunity serves the users of every box of the community
	// (every box whose key [Config.Keys] knows). The zero value.
	FederateCommunity Federation = iota
	// FederateOwn serves only the users of this box ([Config.NodeID]).
	FederateOwn
	// FederateList serves the users of the boxes in [Config.FederatedBoxes]
	// (and of this box).
	FederateList
)

// String returns "community", "own" or "list".
func (f Federation) String() string {
	switch f {
	case FederateCommunity:
		return "community"
	case FederateOwn:
		return "own"
	case FederateList:
		return "list"
	}
	return fmt.Sprintf("Federation(%d)", int(f))
}

// AccessEntry is one line of the optional access log: what the owner chose
// to record of a finished request or tunnel. Host is the requested host
// name or address, as the client gave it.
type AccessEntry struct {
	Time   time.Time
	User   string // "" without authentication
	Box    string // the issuing box of the user's credential
	Method string // "GET", ..., "CONNECT", or "SOCKS5"
	Host   string
	// URL is the full request target, with path and query, of a plain
	// HTTP request, host:port of a tunnel. An access log keeps it only
	// when the owner asked for it (see AccessLogFields).
	URL       string
	Status    int // HTTP status, 200 for a tunnel that was opened
	BytesUp   int64
	BytesDown int64
}

// Config configures a [Proxy]. The zero value is a working gateway without
// authentication that listens nowhere until listeners or addresses are
// given. A Config must not be modified after it is passed to [New].
type Config struct {
	// Logger receives events (listening, stopped, failures). nil discards
	// them. Requests are never logged here; see AccessLog.
	Logger *slog.Logger

	// HTTPListeners serve the HTTP forward proxy (with CONNECT). Run closes
	// them when it returns. When empty, Run listens on HTTPAddrs.
	HTTPListeners []net.Listener
	// HTTPAddrs are "host:port" TCP addresses for the HTTP proxy, used only
	// when HTTPListeners is empty.
	HTTPAddrs []string
	// SOCKSListeners serve SOCKS5. Run closes them when it returns. When
	// empty, Run listens on SOCKSAddrs.
	SOCKSListeners []net.Listener
	// SOCKSAddrs are "host:port" TCP addresses for SOCKS5, used only when
	// SOCKSListeners is empty.
	SOCKSAddrs []string

	// Keys returns the X25519 node public key of a box of the community by
	// its node ID (the roster). nil turns authentication off: every client
	// is the anonymous user "" and shares its limits. Keys must be safe for
	// concurrent use and fast; it is called on a credential cache miss (and
	// on every hit when KeysAuthoritative).
	Keys func(nodeID string) (pub [32]byte, ok bool)
	// KeysAuthoritative says that Keys knows every member of the
	// community, online or not (a roster, which keeps offline members), so
	// that a box it does not know was revoked or its membership expired:
	// cached credentials of such a box are then refused at once. False
	// keeps cached credentials working while Keys forgets their box, for a
	// Keys that only knows the boxes online.
	KeysAuthoritative bool
	// NodeID is this box's node ID: its users are always served, and
	// credentials restricted to a list of gateways must name it.
	NodeID string
	// Federation is whose users are served; zero serves the whole community.
	Federation Federation
	// FederatedBoxes are the node IDs served with FederateList.
	FederatedBoxes []string
	// CredentialCacheSize bounds the cache of verified credentials; zero
	// means 4096, negative disables the cache (every request verifies).
	CredentialCacheSize int

	// AllowedSources are the client networks served; connections from
	// elsewhere are closed at once. Zero means DefaultSources plus
	// Community.
	AllowedSources []netip.Prefix
	// Community are the community's address ranges (overlay IPv4 range and
	// ULA prefix): allowed as sources by default, denied as destinations.
	Community []netip.Prefix
	// LocalNets are the networks of the gateway's own LAN, denied as
	// destinations. Zero means the networks of the host's interfaces when
	// New runs.
	LocalNets []netip.Prefix
	// AllowedDestinations are exceptions to the destination deny list
	// (DeniedDestinations, Community, LocalNets). Zero allows none.
	AllowedDestinations []netip.Prefix
	// TunnelPorts are the ports CONNECT and SOCKS5 may reach (SOCKS5 also
	// 80). Zero means 443 only.
	TunnelPorts []uint16
	// AnyPort lifts every port restriction (tunnels and plain HTTP, which
	// otherwise may reach 80, 443 and ports from 1024 up).
	AnyPort bool

	// UserRate limits each user's bandwidth in bytes per second, in each
	// direction separately; zero is unlimited.
	UserRate int64
	// UserBurst is the bytes a user may send or receive at once before the
	// rate applies; zero means UserRate/8 or 64 KiB, whichever is larger.
	UserBurst int64
	// UserMaxConns limits each user's concurrent client connections (HTTP
	// keep-alive connections, tunnels, SOCKS5 sessions); zero is unlimited.
	UserMaxConns int
	// UserDailyQuota is the bytes (both directions together) a user may
	// relay per calendar day (in the local time zone); zero is unlimited.
	UserDailyQuota int64
	// TotalRate caps the bandwidth of all users together, in bytes per
	// second and direction, so that the owner's own traffic keeps priority;
	// zero is unlimited.
	TotalRate int64
	// MaxConns limits the client connections open at once; further
	// connections are closed at accept. Zero means 8192.
	MaxConns int

	// HeaderTimeout bounds reading a request's head (or a SOCKS5
	// handshake), against slowloris clients; zero means 10 s.
	HeaderTimeout time.Duration
	// IdleTimeout closes an HTTP keep-alive connection idle between
	// requests; zero means 2 min.
	IdleTimeout time.Duration
	// TunnelIdleTimeout closes a tunnel without traffic in either direction;
	// zero means 10 min.
	TunnelIdleTimeout time.Duration
	// DialTimeout bounds connecting to a destination; zero means 10 s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds waiting for a destination's response
	// head; zero means 60 s.
	ResponseHeaderTimeout time.Duration
	// MaxHeaderBytes bounds a request head; zero means 16 KiB.
	MaxHeaderBytes int

	// Resolver resolves destination names; nil is net.DefaultResolver.
	Resolver *net.Resolver
	// Now is the clock for credential expiry, quotas and rates; nil is
	// time.Now.
	Now func() time.Time
	// AccessLog, when set, is called after each request or tunnel ends. nil
	// (the default) keeps no access log. It must not block for long.
	AccessLog func(AccessEntry)
	// Via is the pseudonym in the Via header (RFC 9110 §7.6.3); zero means
	// "cloudbox".
	Via string
}

// DefaultSources are the client networks served when
// Config.AllowedSources is empty (besides Config.Community): loopback,
// RFC 1918, shared address space (RFC 6598), IPv4 and IPv6 link-local, and
// unique local IPv6 addresses.
var DefaultSources = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// DeniedDestinations are never reached through the gateway unless listed in
// Config.AllowedDestinations: "this network", loopback, private, shared,
// link-local, benchmarking-free special ranges, multicast and reserved
// addresses of IPv4 and IPv6.
var DeniedDestinations = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// withDefaults returns cfg with every zero field replaced by its default,
// or an error naming the first invalid field.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Federation < FederateCommunity || cfg.Federation > FederateList {
		return cfg, fmt.Errorf("Config.Federation: unknown policy %d", int(cfg.Federation))
	}
	if cfg.Federation == FederateList && len(cfg.FederatedBoxes) == 0 && cfg.NodeID == "" {
		return cfg, errors.New("Config.FederatedBoxes: empty list and no NodeID: nobody would be served")
	}
	if cfg.CredentialCacheSize == 0 {
		cfg.CredentialCacheSize = 4096
	}
	if len(cfg.AllowedSources) == 0 {
		cfg.AllowedSources = append(append([]netip.Prefix(nil), DefaultSources...), cfg.Community...)
	}
	if cfg.LocalNets == nil {
		cfg.LocalNets = interfaceNets()
	}
	if len(cfg.TunnelPorts) == 0 {
		cfg.TunnelPorts = []uint16{443}
	}
	for name, v := range map[string]int64{"UserRate": cfg.UserRate, "UserBurst": cfg.UserBurst,
		"UserDailyQuota": cfg.UserDailyQuota, "TotalRate": cfg.TotalRate,
		"UserMaxConns": int64(cfg.UserMaxConns), "MaxConns": int64(cfg.MaxConns)} {
		if v < 0 {
			return cfg, fmt.Errorf("Config.%s: negative value %d", name, v)
		}
	}
	if cfg.UserBurst == 0 {
		cfg.UserBurst = max(cfg.UserRate/8, 64<<10)
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = 8192
	}
	defDur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	defDur(&cfg.HeaderTimeout, 10*time.Second)
	defDur(&cfg.IdleTimeout, 2*time.Minute)
	defDur(&cfg.TunnelIdleTimeout, 10*time.Minute)
	defDur(&cfg.DialTimeout, 10*time.Second)
	defDur(&cfg.ResponseHeaderTimeout, 60*time.Second)
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 16 << 10
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Via == "" {
		cfg.Via = "cloudbox"
	}
	for _, c := range cfg.Via {
		if c <= ' ' || c >= 0x7f || c == ',' || c == '(' || c == ')' {
			return cfg, fmt.Errorf("Config.Via: %q is not a token", cfg.Via)
		}
	}
	return cfg, nil
}

// interfaceNets returns the networks of the host's interface addresses.
func interfaceNets() []netip.Prefix {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var nets []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ones, _ := ipn.Mask.Size()
		if p, err := ip.Unmap().Prefix(ones); err == nil {
			nets = append(nets, p)
		}
	}
	return nets
}
