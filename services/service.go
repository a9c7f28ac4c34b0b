package services

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on what a box may publish. Receivers enforce them too: a document
// beyond them is dropped and counted.
const (
	// MaxEntries is the most services one box may publish, built-in ones
	// included.
	MaxEntries = 64
	// MaxDocSize is the largest signed catalog document, in bytes.
	MaxDocSize = 64 << 10
	// MaxInstanceLen is the longest instance name in bytes (RFC 6763 §4.1.1:
	// one DNS label).
	MaxInstanceLen = 63
	// MaxDescriptionLen is the longest description in bytes.
	MaxDescriptionLen = 256
	// MaxTXTKeys is the most TXT attributes of one service.
	MaxTXTKeys = 32
	// MaxTXTSize is the largest sum of the "key=value" strings of one
	// service (RFC 6763 §6.2 recommends keeping TXT data under 1300 bytes).
	MaxTXTSize = 1300
)

// Service is what a box publishes. The zero value is not valid: Instance,
// Type and Port are required.
type Service struct {
	// Instance is the user-visible name ("Community panel"), unique per
	// owner and Type: 1 to 63 bytes of UTF-8 without control characters
	// (RFC 6763 §4.1.1).
	Instance string
	// Type is the DNS-SD service type "_name._tcp" or "_name._udp", name
	// being 1 to 15 letters, digits and inner hyphens with at least one
	// letter (RFC 6763 §7, RFC 6335 §5.1).
	Type string
	// Port is the TCP or UDP port, 1 to 65535.
	Port uint16
	// TXT holds the DNS-SD attributes (RFC 6763 §6): keys are 1 to 9
	// printable ASCII characters without '=', unique ignoring case; at
	// most MaxTXTKeys pairs, each "key=value" at most 255 bytes and
	// MaxTXTSize bytes in all. Nil means none.
	TXT map[string]string
	// Description is free text for people, at most 256 bytes of UTF-8
	// without control characters. Optional.
	Description string
	// Addr is the address the service listens on when it is not the owner
	// box itself (a printer on the box's LAN). The zero value means the
	// owner's overlay address. It must not be unspecified or multicast.
	Addr netip.Addr
}

// Record is one service as the catalog shows it: the published Service
// plus what the catalog knows about its owner.
type Record struct {
	Service
	// OwnerID and OwnerName identify the publishing box (its node ID and
	// name in the roster, not what the document claims).
	OwnerID, OwnerName string
	// OwnerIPv4 and OwnerIPv6 are the owner's overlay addresses.
	OwnerIPv4, OwnerIPv6 netip.Addr
	// Healthy is false when the owner's last health check found the
	// service's port closed.
	Healthy bool
	// Builtin marks the services of cloudbox itself.
	Builtin bool
	// Updated is when the owner last changed the entry (its clock).
	Updated time.Time
	// Expires is when the entry is dropped unless its owner renews it.
	Expires time.Time
}

// key identifies a service of one owner.
func (s *Service) key() string { return s.Type + "\x00" + s.Instance }

// Validate checks s against the rules documented on [Service]. Errors wrap
// [ErrInvalidService] and say what to change.
func (s *Service) Validate() error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidService, err)
	}
	return nil
}

func (s *Service) validate() error {
	if err := validateInstance(s.Instance); err != nil {
		return err
	}
	if err := validateType(s.Type); err != nil {
		return err
	}
	if s.Port == 0 {
		return fmt.Errorf("port is missing: give the port the service listens on (1-65535)")
	}
	if err := validateTXT(s.TXT); err != nil {
		return err
	}
	if len(s.Description) > MaxDescriptionLen {
		return fmt.Errorf("description is %d bytes long: shorten it to at most %d", len(s.Description), MaxDescriptionLen)
	}
	if err := validateText("description", s.Description); err != nil {
		return err
	}
	if s.Addr.IsValid() && (s.Addr.IsUnspecified() || s.Addr.IsMulticast()) {
		return fmt.Errorf("address %s cannot be a service address: give the unicast address of the device or leave it empty", s.Addr)
	}
	if s.Addr.Zone() != "" {
		return fmt.Errorf("address %s has a zone: give a global or LAN address without %%zone", s.Addr)
	}
	return nil
}

func validateInstance(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("instance name is empty: give the service a name such as \"Community panel\"")
	case len(name) > MaxInstanceLen:
		return fmt.Errorf("instance name is %d bytes long: shorten it to at most %d bytes", len(name), MaxInstanceLen)
	}
	return validateText("instance name", name)
}

// validateText rejects invalid UTF-8 and control characters.
func validateText(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8 text", what)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s contains a control character (%U): remove it", what, r)
		}
	}
	return nil
}

// validateType checks "_name._tcp" or "_name._udp" (RFC 6763 §7, service
// names as in RFC 6335 §5.1).
func validateType(typ string) error {
	name, proto, ok := strings.Cut(typ, ".")
	if !ok || (proto != "_tcp" && proto != "_udp") || !strings.HasPrefix(name, "_") {
		return fmt.Errorf("type %q is not of the form _name._tcp or _name._udp (for example _http._tcp)", typ)
	}
	name = name[1:]
	if len(name) < 1 || len(name) > 15 {
		return fmt.Errorf("type %q: the name between '_' and '.' must be 1 to 15 characters", typ)
	}
	letter := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			letter = true
		case c >= '0' && c <= '9':
		case c == '-':
			if i == 0 || i == len(name)-1 || name[i-1] == '-' {
				return fmt.Errorf("type %q: hyphens may only separate letters or digits", typ)
			}
		default:
			return fmt.Errorf("type %q: the name may contain only letters, digits and hyphens", typ)
		}
	}
	if !letter {
		return fmt.Errorf("type %q: the name must contain at least one letter", typ)
	}
	return nil
}

// validateTXT applies RFC 6763 §6.4 to keys and §6.1/§6.2 to sizes.
func validateTXT(txt map[string]string) error {
	if len(txt) > MaxTXTKeys {
		return fmt.Errorf("%d TXT attributes: keep at most %d", len(txt), MaxTXTKeys)
	}
	total := 0
	seen := make(map[string]bool, len(txt))
	for k, v := range txt {
		if k == "" || len(k) > 9 {
			return fmt.Errorf("TXT key %q must be 1 to 9 characters long", k)
		}
		for i := 0; i < len(k); i++ {
			if k[i] < 0x20 || k[i] > 0x7e || k[i] == '=' {
				return fmt.Errorf("TXT key %q may contain only printable ASCII characters other than '='", k)
			}
		}
		lk := strings.ToLower(k)
		if seen[lk] {
			return fmt.Errorf("TXT key %q appears twice (keys ignore case)", k)
		}
		seen[lk] = true
		n := len(k) + 1 + len(v)
		if n > 255 {
			return fmt.Errorf("TXT attribute %q is %d bytes long as key=value: shorten it to at most 255", k, n)
		}
		total += n
	}
	if total > MaxTXTSize {
		return fmt.Errorf("TXT attributes take %d bytes: keep them under %d", total, MaxTXTSize)
	}
	return nil
}

// Filter selects records in [Catalog.Services]. The zero value selects all.
type Filter struct {
	// Type keeps only services of this type ("_http._tcp"); "" keeps all.
	Type string
	// Owner keeps only services of the box with this node ID or name.
	Owner string
	// Health is "" (all), "healthy" or "unhealthy".
	Health string
}

func (f *Filter) match(r *Record) bool {
	if f.Type != "" && !strings.EqualFold(f.Type, r.Type) {
		return false
	}
	if f.Owner != "" && f.Owner != r.OwnerID && f.Owner != r.OwnerName {
		return false
	}
	switch f.Health {
	case "healthy":
		return r.Healthy
	case "unhealthy":
		return !r.Healthy
	}
	return true
}
