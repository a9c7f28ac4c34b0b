package mdns

import (
	"strings"

	"github.com/miekg/dns"
)

// Names are kept in github.com/miekg/dns's presentation form: labels
// separated by dots, with the bytes escaped the way dns.UnpackDomainName
// escapes them, so that a name built here and the same name read from the
// wire are equal strings after canon.

// local is the mDNS domain (RFC 6762 §3).
const local = "local."

// servicesName is the DNS-SD service type enumeration name (RFC 6763 §9).
const servicesName = "_services._dns-sd._udp.local."

// escapeLabel returns the presentation form of one label of raw bytes, as
// dns.UnpackDomainName would write it.
func escapeLabel(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '.' || c == ' ' || c == '\'' || c == '@' || c == ';' || c == '(' || c == ')' || c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			b.WriteByte('\\')
			b.WriteByte('0' + c/100)
			b.WriteByte('0' + c/10%10)
			b.WriteByte('0' + c%10)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// escapeTXT returns the presentation form of a TXT string of raw bytes for
// packing by github.com/miekg/dns, which reads backslash escapes.
func escapeTXT(raw string) string {
	if !strings.ContainsAny(raw, `\"`) {
		return raw
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return r.Replace(raw)
}

// unescape reverses escapeLabel and the escaping of TXT strings: \X is X
// and \DDD is the byte DDD.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if v < 256 {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i+1])
		i++
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// canon is the form names are compared and keyed in: fully qualified and
// lower case (DNS names compare case-insensitively in ASCII, RFC 4343; every
// other byte is escaped as \DDD).
func canon(name string) string {
	return strings.ToLower(dns.Fqdn(name))
}

// splitFirst splits a name into its first label (still escaped) and the
// rest, honouring escaped dots.
func splitFirst(name string) (first, rest string) {
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '\\':
			i++
		case '.':
			return name[:i], name[i+1:]
		}
	}
	return name, ""
}

// validHostLabels reports whether s is one or more dot-separated host name
// labels (letters, digits, hyphens; RFC 952/1123), each at most 63 bytes.
func validHostLabels(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validServiceType reports whether t is a DNS-SD service type
// "_name._tcp" or "_name._udp" (RFC 6763 §7).
func validServiceType(t string) bool {
	name, proto := splitFirst(t)
	if proto != "_tcp" && proto != "_udp" {
		return false
	}
	if len(name) < 2 || len(name) > 16 || name[0] != '_' {
		return false
	}
	return validHostLabels(name[1:])
}
