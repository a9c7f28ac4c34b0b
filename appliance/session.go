package appliance

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"math"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// sessionCookie is the name of the panel's session cookie.
const sessionCookie = "cloudbox_session"

// Session lifetimes: a session ends after sessionIdle without a request
// and sessionMax after login in any case.
const (
	sessionIdle = 12 * time.Hour
	sessionMax  = 7 * 24 * time.Hour
	// maxSessions bounds the sessions kept in memory; the oldest goes.
	maxSessions = 1000
)

// session is a logged-in browser. Sessions live in memory only: a restart
// of cloudboxd logs everyone out, and nothing secret is written to the SD
// card.
type session struct {
	// Immutable after creation.
	key     string // SHA-256 of the cookie value, hex
	csrf    string // token every state-changing form and request carries
	created time.Time

	// Guarded by sessionStore.mu.
	account string // "" while the wizard has not created the admin yet
	role    string
	// wizard marks a session of the first-boot wizard: it proved physical
	// possession and may use only the wizard until setup is done.
	wizard bool
	seen   time.Time
}

// sessionStore holds the sessions; it is safe for concurrent use.
type sessionStore struct {
	now func() time.Time // immutable

	mu       sync.Mutex
	sessions map[string]*session
}

func newSessionStore(now func() time.Time) *sessionStore {
	return &sessionStore{now: now, sessions: make(map[string]*session)}
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sessionKey(cookie string) string {
	sum := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(sum[:])
}

// create starts a session and returns it with its cookie value.
func (s *sessionStore) create(accountName, role string, wizard bool) (*session, string) {
	value := randomString(32)
	now := s.now()
	ss := &session{key: sessionKey(value), csrf: randomString(24), created: now, account: accountName, role: role, wizard: wizard, seen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sessions) >= maxSessions {
		var oldest *session
		for _, o := range s.sessions {
			if oldest == nil || o.seen.Before(oldest.seen) {
				oldest = o
			}
		}
		delete(s.sessions, oldest.key)
	}
	s.sessions[ss.key] = ss
	return ss, value
}

// lookup returns the live session of a cookie value and marks it seen.
func (s *sessionStore) lookup(value string) (*session, bool) {
	key := sessionKey(value)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[key]
	if !ok {
		return nil, false
	}
	if now.Sub(ss.seen) > sessionIdle || now.Sub(ss.created) > sessionMax {
		delete(s.sessions, key)
		return nil, false
	}
	ss.seen = now
	return ss, true
}

// identity returns the account, role and wizard mark of ss.
func (s *sessionStore) identity(ss *session) (accountName, role string, wizard bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ss.account, ss.role, ss.wizard
}

// promote sets the account of a wizard session and, with done, ends its
// wizard mark.
func (s *sessionStore) promote(ss *session, accountName, role string, done bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss.account, ss.role = accountName, role
	if done {
		ss.wizard = false
	}
}

func (s *sessionStore) delete(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, ss.key)
}

// deleteAccount ends every session of an account.
func (s *sessionStore) deleteAccount(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, ss := range s.sessions {
		if ss.account == name {
			delete(s.sessions, k)
		}
	}
}

// checkCSRF reports whether got is the session's CSRF token.
func (ss *session) checkCSRF(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) == 1
}

// setSessionCookie sends the cookie of a session: HttpOnly (scripts cannot
// read it), SameSite=Lax (other sites' forms and requests do not carry it;
// links from them do, for GET only) and Secure over HTTPS.
func setSessionCookie(w http.ResponseWriter, r *http.Request, value string) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: value, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteLaxMode, MaxAge: int(sessionMax / time.Second),
	})
}

func clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteLaxMode, MaxAge: -1,
	})
}

// limit is a token bucket's parameters: burst attempts at once, then one
// more every per.
type limit struct {
	burst float64
	per   time.Duration
}

// Login limits: failed logins per client address and per account, and
// attempts of the wizard's setup code per client and for the whole box.
var (
	loginPerClient  = limit{burst: 10, per: 6 * time.Second}
	loginPerAccount = limit{burst: 5, per: 30 * time.Second}
	codePerClient   = limit{burst: 5, per: 30 * time.Second}
	codePerBox      = limit{burst: 20, per: 10 * time.Second}
)

// maxBuckets bounds the limiter's memory; full buckets are dropped first.
const maxBuckets = 10000

// limiter counts failed attempts with token buckets. It is safe for
// concurrent use.
type limiter struct {
	now func() time.Time // immutable

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
	l      limit
}

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, buckets: make(map[string]*bucket)}
}

// refill brings b up to now; the caller holds mu.
func (b *bucket) refill(now time.Time) {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = math.Min(b.l.burst, b.tokens+float64(el)/float64(b.l.per))
	}
	b.last = now
}

// wait returns how long until every key allows an attempt; 0 means now.
func (l *limiter) wait(keys map[string]limit) time.Duration {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var d time.Duration
	for k := range keys {
		b, ok := l.buckets[k]
		if !ok {
			continue
		}
		b.refill(now)
		if b.tokens < 1 {
			d = max(d, time.Duration((1-b.tokens)*float64(b.l.per)))
		}
	}
	return d
}

// fail takes an attempt from every key.
func (l *limiter) fail(keys map[string]limit) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buckets)+len(keys) > maxBuckets {
		for k, b := range l.buckets {
			if b.refill(now); b.tokens >= b.l.burst {
				delete(l.buckets, k)
			}
		}
	}
	for k, lim := range keys {
		b, ok := l.buckets[k]
		if !ok {
			if len(l.buckets) >= maxBuckets {
				continue // full of active attackers: the other keys still count
			}
			b = &bucket{tokens: lim.burst, last: now, l: lim}
			l.buckets[k] = b
		}
		b.refill(now)
		b.tokens = math.Max(b.tokens-1, -b.l.burst) // a flood cannot lock out for ever
	}
}

// clientKey names the client of r for rate limiting: its address, or its
// /64 for IPv6, where one host owns a whole /64.
func clientKey(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return "client:" + r.RemoteAddr
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "client:" + p.String()
	}
	return "client:" + a.String()
}
