package proxy

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cloudbox/cloudbox/internal/xeddsa"
)

// A Credential lets a member use the gateways of the community: the box
// that issued it vouches for the user until Expires. Its token form (see
// [Credential.Sign]) is the password of HTTP Basic Proxy-Authorization and
// of SOCKS5 username/password authentication, with User as the user name:
//
//	curl -x http://gw:3128 -U alice:cbp1_… https://example.org/
//
// The token is "cbp1_" and the unpadded base64url encoding of the payload
// followed by the XEdDSA signature (64 bytes) of
// "cloudbox proxy credential v1\x00" || payload, made with the issuing
// box's X25519 node key. The payload is: version (1 byte, 1), expiry (8
// bytes, big-endian Unix seconds), then Box and User as one length byte
// and the bytes each, then the number of gateways (1 byte) and each gateway
// node ID as a length byte and the bytes.
type Credential struct {
	// User is the member's name on the issuing box: 1 to 64 bytes of UTF-8
	// without control characters or ':'.
	User string
	// Box is the node ID of the issuing box: 1 to 64 bytes of letters,
	// digits, '.', '_' and '-'.
	Box string
	// Expires is when the credential stops working (whole seconds).
	Expires time.Time
	// Gateways, when not empty, are the node IDs of the only gateways that
	// accept the credential (at most 16).
	Gateways []string
}

const (
	credentialPrefix   = "cbp1_"
	credentialVersion  = 1
	credentialDomain   = "cloudbox proxy credential v1\x00"
	maxCredentialToken = 1024 // characters, prefix included
	maxNameLen         = 64
	maxGateways        = 16
)

// IssueCredential returns the token of a credential for user, issued by
// the box boxID whose X25519 node private key is signerPriv, valid until
// expires on every gateway that serves the box's users.
func IssueCredential(signerPriv [32]byte, boxID, user string, expires time.Time) (string, error) {
	return Credential{User: user, Box: boxID, Expires: expires}.Sign(signerPriv)
}

// Sign returns the token form of c signed with the issuing box's X25519
// node private key.
func (c Credential) Sign(signerPriv [32]byte) (string, error) {
	payload, err := c.marshal()
	if err != nil {
		return "", err
	}
	s, err := xeddsa.NewSigner(signerPriv[:])
	if err != nil {
		return "", fmt.Errorf("signing credential: %w", err)
	}
	sig, err := s.Sign(rand.Reader, signedMessage(payload))
	if err != nil {
		return "", fmt.Errorf("signing credential: %w", err)
	}
	tok := credentialPrefix + base64.RawURLEncoding.EncodeToString(append(payload, sig...))
	if len(tok) > maxCredentialToken {
		return "", fmt.Errorf("credential token longer than %d characters", maxCredentialToken)
	}
	return tok, nil
}

func signedMessage(payload []byte) []byte {
	return append([]byte(credentialDomain), payload...)
}

func (c Credential) marshal() ([]byte, error) {
	if err := checkUser(c.User); err != nil {
		return nil, err
	}
	if !validNodeID(c.Box) {
		return nil, fmt.Errorf("credential box %q: %w", c.Box, ErrBadCredential)
	}
	if len(c.Gateways) > maxGateways {
		return nil, fmt.Errorf("credential lists %d gateways, at most %d: %w", len(c.Gateways), maxGateways, ErrBadCredential)
	}
	b := make([]byte, 0, 64)
	b = append(b, credentialVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Expires.Unix()))
	b = append(b, byte(len(c.Box)))
	b = append(b, c.Box...)
	b = append(b, byte(len(c.User)))
	b = append(b, c.User...)
	b = append(b, byte(len(c.Gateways)))
	for _, g := range c.Gateways {
		if !validNodeID(g) {
			return nil, fmt.Errorf("credential gateway %q: %w", g, ErrBadCredential)
		}
		b = append(b, byte(len(g)))
		b = append(b, g...)
	}
	return b, nil
}

// ParseCredential decodes a token strictly (no trailing bytes, every field
// valid) without verifying its signature. It returns the credential, the
// signed payload and the signature.
func ParseCredential(token string) (c Credential, payload, sig []byte, err error) {
	bad := func(what string) (Credential, []byte, []byte, error) {
		return Credential{}, nil, nil, fmt.Errorf("parsing credential: %s: %w", what, ErrBadCredential)
	}
	if len(token) > maxCredentialToken {
		return bad("too long")
	}
	rest, ok := strings.CutPrefix(token, credentialPrefix)
	if !ok {
		return bad("unknown format")
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	if err != nil {
		return bad("not base64url")
	}
	if len(raw) < 1+8+1+1+1+xeddsa.SignatureSize {
		return bad("too short")
	}
	payload, sig = raw[:len(raw)-xeddsa.SignatureSize], raw[len(raw)-xeddsa.SignatureSize:]
	if payload[0] != credentialVersion {
		return bad("unknown version")
	}
	exp := binary.BigEndian.Uint64(payload[1:9])
	if exp > 1<<40 {
		return bad("expiry out of range")
	}
	c.Expires = time.Unix(int64(exp), 0)
	p := payload[9:]
	field := func() (string, bool) {
		if len(p) < 1 || len(p) < 1+int(p[0]) {
			return "", false
		}
		s := string(p[1 : 1+int(p[0])])
		p = p[1+int(p[0]):]
		return s, true
	}
	if c.Box, ok = field(); !ok || !validNodeID(c.Box) {
		return bad("box")
	}
	if c.User, ok = field(); !ok || checkUser(c.User) != nil {
		return bad("user")
	}
	if len(p) < 1 || p[0] > maxGateways {
		return bad("gateways")
	}
	n := int(p[0])
	p = p[1:]
	for range n {
		g, ok := field()
		if !ok || !validNodeID(g) {
			return bad("gateway")
		}
		c.Gateways = append(c.Gateways, g)
	}
	if len(p) != 0 {
		return bad("trailing bytes")
	}
	return c, payload, sig, nil
}

// VerifyCredential parses token and checks its signature with the issuing
// box's key from keys and its expiry at now. It does not apply a
// gateway's federation policy.
func VerifyCredential(token string, keys func(string) ([32]byte, bool), now time.Time) (Credential, error) {
	c, payload, sig, err := ParseCredential(token)
	if err != nil {
		return Credential{}, err
	}
	pub, ok := keys(c.Box)
	if !ok {
		return Credential{}, fmt.Errorf("credential of unknown box %s: %w", c.Box, ErrBadCredential)
	}
	if !xeddsa.Verify(pub, signedMessage(payload), sig) {
		return Credential{}, fmt.Errorf("credential signature: %w", ErrBadCredential)
	}
	if !now.Before(c.Expires) {
		return Credential{}, ErrExpired
	}
	return c, nil
}

func checkUser(u string) error {
	if len(u) == 0 || len(u) > maxNameLen || !utf8.ValidString(u) {
		return fmt.Errorf("user name must be 1 to %d bytes of UTF-8: %w", maxNameLen, ErrBadCredential)
	}
	for _, r := range u {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == ':' {
			return fmt.Errorf("user name %q has a control character or ':': %w", u, ErrBadCredential)
		}
	}
	return nil
}

func validNodeID(s string) bool {
	if len(s) == 0 || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// credCache remembers verified credentials, keyed by the SHA-256 of
// "user:token", in two generations: lookups promote entries of the old
// generation, and when the new one is full it becomes the old one. So it
// holds at most size entries and drops the least recently used first,
// roughly.
type credCache struct {
	size int
	mu   sync.Mutex
	cur  map[[32]byte]Credential
	old  map[[32]byte]Credential
}

func newCredCache(size int) *credCache {
	if size <= 0 {
		return nil
	}
	return &credCache{size: max(size/2, 1), cur: make(map[[32]byte]Credential)}
}

func cacheKey(user, token string) [32]byte {
	h := sha256.New()
	h.Write([]byte(user))
	h.Write([]byte{':'})
	h.Write([]byte(token))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *credCache) get(k [32]byte) (Credential, bool) {
	if c == nil {
		return Credential{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.cur[k]; ok {
		return v, true
	}
	v, ok := c.old[k]
	if ok {
		c.putLocked(k, v)
	}
	return v, ok
}

func (c *credCache) put(k [32]byte, v Credential) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(k, v)
}

func (c *credCache) putLocked(k [32]byte, v Credential) {
	if len(c.cur) >= c.size {
		c.old, c.cur = c.cur, make(map[[32]byte]Credential, c.size)
	}
	c.cur[k] = v
}
