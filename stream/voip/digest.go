package voip

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// nonceTTL is how long a digest nonce is accepted; an older one gets a new
// challenge with stale=true (RFC 7616 §3.3).
const nonceTTL = 5 * time.Minute

// digestCreds are the fields of an Authorization header (RFC 7616 §3.4).
type digestCreds struct {
	Username, Realm, Nonce, URI, Response string
	Algorithm, CNonce, QOP, NC            string
}

// parseDigest reads the value of an Authorization or Proxy-Authorization
// header: "Digest" followed by comma-separated name=value pairs, values
// quoted or tokens (RFC 7616 §3.4, RFC 7235 §2.1).
func parseDigest(v string) (digestCreds, error) {
	var c digestCreds
	v = strings.TrimSpace(v)
	scheme, rest, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Digest") {
		return c, fmt.Errorf("%w: not a digest authorization", ErrMalformed)
	}
	for rest = strings.TrimSpace(rest); rest != ""; {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return c, fmt.Errorf("%w: parameter without value", ErrMalformed)
		}
		name := strings.ToLower(strings.TrimSpace(rest[:eq]))
		rest = strings.TrimLeft(rest[eq+1:], " \t")
		var val string
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
				}
				b.WriteByte(rest[i])
			}
			if i >= len(rest) {
				return c, fmt.Errorf("%w: unterminated quoted value", ErrMalformed)
			}
			val, rest = b.String(), rest[i+1:]
		} else {
			end := strings.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			val, rest = strings.TrimSpace(rest[:end]), rest[end:]
		}
		rest = strings.TrimLeft(rest, " \t")
		if rest != "" {
			if rest[0] != ',' {
				return c, fmt.Errorf("%w: expected comma after %s", ErrMalformed, name)
			}
			rest = strings.TrimLeft(rest[1:], " \t")
		}
		switch name {
		case "username":
			c.Username = val
		case "realm":
			c.Realm = val
		case "nonce":
			c.Nonce = val
		case "uri":
			c.URI = val
		case "response":
			c.Response = val
		case "algorithm":
			c.Algorithm = val
		case "cnonce":
			c.CNonce = val
		case "qop":
			c.QOP = val
		case "nc":
			c.NC = val
		}
	}
	if c.Username == "" || c.Nonce == "" || c.Response == "" || c.URI == "" {
		return c, fmt.Errorf("%w: digest without username, nonce, uri or response", ErrMalformed)
	}
	if c.Algorithm != "" && !strings.EqualFold(c.Algorithm, "MD5") {
		return c, fmt.Errorf("%w: unsupported digest algorithm %q", ErrMalformed, c.Algorithm)
	}
	if c.QOP != "" && c.QOP != "auth" {
		return c, fmt.Errorf("%w: unsupported qop %q", ErrMalformed, c.QOP)
	}
	return c, nil
}

func md5hex(parts ...string) string {
	h := md5.New()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{':'})
		}
		h.Write([]byte(p))
	}
	var sum [md5.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}

// digestResponse computes the expected response (RFC 7616 §3.4.1 with MD5,
// and RFC 2617 §3.2.2.1 without qop).
func digestResponse(c digestCreds, method, password string) string {
	ha1 := md5hex(c.Username, c.Realm, password)
	ha2 := md5hex(method, c.URI)
	if c.QOP == "auth" {
		return md5hex(ha1, c.Nonce, c.NC, c.CNonce, c.QOP, ha2)
	}
	return md5hex(ha1, c.Nonce, ha2)
}

// nonces makes and checks stateless nonces: a timestamp and an HMAC over it
// and the client's address, so a nonce works only from where it was sent
// and only for nonceTTL.
type nonces struct {
	key [32]byte
}

func (n *nonces) mac(ts []byte, src netip.Addr) []byte {
	m := hmac.New(sha256.New, n.key[:])
	m.Write(ts)
	a := src.Unmap().As16()
	m.Write(a[:])
	return m.Sum(nil)[:16]
}

func (n *nonces) make(now time.Time, src netip.Addr) string {
	var buf [8 + 16]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(now.Unix()))
	copy(buf[8:], n.mac(buf[:8], src))
	return base64.RawURLEncoding.EncodeToString(buf[:])
}

// check reports whether nonce was made for src (valid) and whether it is
// still fresh.
func (n *nonces) check(nonce string, now time.Time, src netip.Addr) (valid, fresh bool) {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != 24 {
		return false, false
	}
	if subtle.ConstantTimeCompare(b[8:], n.mac(b[:8], src)) != 1 {
		return false, false
	}
	made := time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	age := now.Sub(made)
	return true, age >= -time.Minute && age <= nonceTTL
}

// challenge is the WWW-Authenticate value for realm.
func (n *nonces) challenge(realm string, now time.Time, src netip.Addr, stale bool) string {
	s := fmt.Sprintf(`Digest realm="%s", nonce="%s", algorithm=MD5, qop="auth"`, realm, n.make(now, src))
	if stale {
		s += ", stale=true"
	}
	return s
}
