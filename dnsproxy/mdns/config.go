package mdns

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Service is one DNS-SD service instance to advertise on the LAN
// (RFC 6763 §4–6).
type Service struct {
	// Instance is the user-visible instance name, any UTF-8 text up to 63
	// bytes ("Living room printer"). Required.
	Instance string
	// Type is the service type, "_name._tcp" or "_name._udp" ("_ipp._tcp").
	// Required.
	Type string
	// Host is the SRV target as host name labels under .local ("box2-cb"
	// for box2-cb.local, or several labels): the service lives on another
	// box, reachable at Addrs, and the responder answers for that name
	// too. Empty means this box (Config.Hostname and its addresses).
	Host string
	// Port is the service's port; 0 is allowed (RFC 6763 §5: "no service").
	Port uint16
	// TXT are the service's key=value attributes (RFC 6763 §6); nil means
	// one empty string, as §6.1 requires.
	TXT []string
	// Addrs are Host's addresses; used only when Host is not empty.
	Addrs []netip.Addr
}

// Found is a service discovered on the LAN by browsing.
type Found struct {
	// Instance is the instance name, unescaped ("Living room printer").
	Instance string
	// Type is the service type as in Config.Browse ("_ipp._tcp").
	Type string
	// Host is the SRV target ("printer.local.").
	Host string
	// Addrs are Host's addresses, IPv4 before IPv6, sorted; link-local
	// ones are left out (they mean nothing beyond the LAN), and a service
	// without other addresses is not reported.
	Addrs []netip.Addr
	// Port is the SRV port.
	Port uint16
	// TXT are the TXT strings, unescaped.
	TXT []string
	// Expires is when the service disappears unless it is refreshed (the
	// earliest expiry of its PTR and SRV records).
	Expires time.Time
}

// Config configures a Responder. The zero value answers for this machine's
// host name on its first multicast-capable interface with no services and
// no browsing.
type Config struct {
	// Logger receives events; nil discards them.
	Logger *slog.Logger
	// Interface is the LAN interface name; mDNS is spoken only there. Empty
	// picks the first interface that is up, not loopback, supports
	// multicast and has an IPv4 address (a box should always name it).
	Interface string
	// Hostname is the first label of the box's name, answered as
	// "<Hostname>.local". Empty means the first label of os.Hostname.
	Hostname string
	// Addrs returns this box's LAN addresses for the A/AAAA records. It is
	// called on start, on Update and every few seconds; nil means the
	// interface's own addresses (loopback ones excluded).
	Addrs func() []netip.Addr
	// Services returns the services to advertise: this box's own (Host "")
	// and the community's (Host set). It is called on start and on each
	// Update, from the responder's goroutine; nil advertises none.
	Services func() []Service
	// Browse are the service types to look for on the LAN ("_ipp._tcp");
	// what is found is reported by Found. Nil browses nothing.
	Browse []string
	// MaxFound bounds the browser's cache of records (the services found
	// use a few each); records beyond it are dropped and counted. Zero
	// means 4096.
	MaxFound int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// defaultMaxFound is the browser cache's bound when Config.MaxFound is 0.
const defaultMaxFound = 4096

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxFound == 0 {
		cfg.MaxFound = defaultMaxFound
	}
	if cfg.MaxFound < 0 {
		return cfg, fmt.Errorf("%w: MaxFound %d is negative", ErrInvalidConfig, cfg.MaxFound)
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return cfg, fmt.Errorf("%w: Hostname empty and os.Hostname failed: %v", ErrInvalidConfig, err)
		}
		cfg.Hostname, _, _ = strings.Cut(h, ".")
	}
	if !validHostLabels(cfg.Hostname) || strings.Contains(cfg.Hostname, ".") {
		return cfg, fmt.Errorf("%w: Hostname %q is not a host name label", ErrInvalidConfig, cfg.Hostname)
	}
	for _, t := range cfg.Browse {
		if !validServiceType(t) {
			return cfg, fmt.Errorf("%w: Browse type %q is not _name._tcp or _name._udp", ErrInvalidConfig, t)
		}
	}
	return cfg, nil
}
