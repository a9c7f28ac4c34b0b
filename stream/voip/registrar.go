package voip

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// binding is one registered contact of a user (RFC 3261 §10.3).
type binding struct {
	contact sip.Uri
	key     string // contact URI as text
	expires time.Time
	src     peer // where the REGISTER came from (the flow, for TCP)
	callID  string
	cseq    uint32
	agent   string
}

// registrar is the location service: users' bindings. Safe for concurrent
// use.
type registrar struct {
	mu    sync.Mutex
	users map[string][]binding
}

func newRegistrar() *registrar {
	return &registrar{users: make(map[string][]binding)}
}

// lookup returns the newest live binding of user.
func (r *registrar) lookup(user string, now time.Time) (binding, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	bs := r.users[user]
	var best binding
	found := false
	for _, b := range bs {
		if now.Before(b.expires) && (!found || b.expires.After(best.expires)) {
			best, found = b, true
		}
	}
	return best, found
}

// Registration is a registered contact, for the API.
type Registration struct {
	User    string    `json:"user"`
	Contact string    `json:"contact"`
	Source  string    `json:"source"`
	Expires time.Time `json:"expires"`
	Agent   string    `json:"agent,omitempty"`
}

// Registrations returns the live registrations, by user.
func (s *Server) Registrations() []Registration {
	now := s.now()
	s.reg.mu.Lock()
	defer s.reg.mu.Unlock()
	var out []Registration
	for u, bs := range s.reg.users {
		for _, b := range bs {
			if now.Before(b.expires) {
				out = append(out, Registration{User: u, Contact: b.key, Source: b.src.ap.String(), Expires: b.expires, Agent: b.agent})
			}
		}
	}
	slices.SortFunc(out, func(a, b Registration) int { return strings.Compare(a.User+a.Contact, b.User+b.Contact) })
	return out
}

// Registered reports whether user has a live registration here.
func (s *Server) Registered(user string) bool {
	_, ok := s.reg.lookup(user, s.now())
	return ok
}

// register handles a REGISTER (RFC 3261 §10.3).
func (s *Server) register(req *sip.Request, src peer) {
	to := req.To()
	user := to.Address.User
	if user == "" {
		s.reply(req, src, 400, "Missing User In To")
		return
	}
	now := s.now()
	if s.cfg.Password != nil && !s.authenticate(req, src, user, now, registrarAuth) {
		return
	}
	defExp := defaultTTL
	if h := req.GetHeader("Expires"); h != nil {
		v, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || v < 0 {
			s.reply(req, src, 400, "Bad Expires")
			return
		}
		defExp = v
	}
	contacts := req.GetHeaders("Contact")
	cseq := req.CSeq().SeqNo
	callID := req.CallID().Value()
	agent := ""
	if h := req.GetHeader("User-Agent"); h != nil {
		agent = truncate(h.Value(), 80)
	}

	s.reg.mu.Lock()
	bs := slices.DeleteFunc(s.reg.users[user], func(b binding) bool { return !now.Before(b.expires) })
	for _, h := range contacts {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			continue
		}
		if c.Address.Wildcard {
			// §10.3 step 6: "*" only with Expires: 0 and alone.
			if defExp != 0 || len(contacts) != 1 {
				s.reg.mu.Unlock()
				s.reply(req, src, 400, "Bad Wildcard Contact")
				return
			}
			bs = nil
			break
		}
		exp := defExp
		if v, ok := c.Params.Get("expires"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				s.reg.mu.Unlock()
				s.reply(req, src, 400, "Bad Contact Expires")
				return
			}
			exp = n
		}
		if exp > 0 && exp < minTTL {
			exp = minTTL
		}
		exp = min(exp, defaultTTL)
		key := c.Address.String()
		i := slices.IndexFunc(bs, func(b binding) bool { return b.key == key })
		if i >= 0 && bs[i].callID == callID && cseq <= bs[i].cseq {
			continue // §10.3 step 7: out of order
		}
		if exp == 0 {
			if i >= 0 {
				bs = slices.Delete(bs, i, i+1)
			}
			continue
		}
		b := binding{contact: c.Address, key: key, expires: now.Add(time.Duration(exp) * time.Second),
			src: src, callID: callID, cseq: cseq, agent: agent}
		if i >= 0 {
			bs[i] = b
		} else if len(bs) < 8 {
			bs = append(bs, b)
		}
	}
	if len(bs) == 0 {
		delete(s.reg.users, user)
	} else {
		s.reg.users[user] = bs
	}
	res := s.response(req, 200, "OK")
	for _, b := range bs {
		u := b.contact
		res.AppendHeader(&sip.ContactHeader{Address: u, Params: sip.HeaderParams{{K: "expires", V: strconv.Itoa(int(b.expires.Sub(now).Round(time.Second) / time.Second))}}})
	}
	s.reg.mu.Unlock()
	s.send(res, src)
}

// authScheme is how a request is challenged: by the registrar (401,
// Authorization) or by the proxy for calls (407, Proxy-Authorization; RFC
// 3261 §22.3).
type authScheme struct {
	code                     int
	reason                   string
	credentials, challengeIn string
}

var (
	registrarAuth = authScheme{401, "Unauthorized", "Authorization", "WWW-Authenticate"}
	proxyAuth     = authScheme{407, "Proxy Authentication Required", "Proxy-Authorization", "Proxy-Authenticate"}
)

// authenticate checks the digest credentials of req for user, answering a
// challenge, 400 or 403 itself when they are missing or wrong. Failures
// count towards the source's block.
func (s *Server) authenticate(req *sip.Request, src peer, user string, now time.Time, as authScheme) bool {
	ip := src.ap.Addr()
	if s.fails.blocked(ip, now) {
		s.stats.blocked.Add(1)
		s.reply(req, src, 403, "Too Many Failed Attempts")
		return false
	}
	h := req.GetHeader(as.credentials)
	if h == nil {
		s.challenge(req, src, ip, now, false, as)
		return false
	}
	c, err := parseDigest(h.Value())
	if err != nil {
		s.reply(req, src, 400, "Bad "+as.credentials)
		return false
	}
	valid, fresh := s.nonces.check(c.Nonce, now, ip)
	switch {
	case valid && !fresh:
		s.challenge(req, src, ip, now, true, as)
		return false
	case !valid, c.Realm != s.realm(req):
		s.challenge(req, src, ip, now, false, as)
		return false
	}
	pw, ok := s.cfg.Password(c.Username)
	if ok && c.Username == user && digestResponse(c, string(req.Method), pw) == c.Response {
		return true
	}
	s.stats.authFailures.Add(1)
	if s.fails.fail(ip, now) {
		s.log.Warn("sip source blocked after failed authentications", "src", ip)
	}
	s.reply(req, src, 403, "Forbidden")
	return false
}

// realm is the digest realm: the domain (RFC 3261 §22.1).
func (s *Server) realm(*sip.Request) string {
	return s.cfg.Domain
}

func (s *Server) challenge(req *sip.Request, src peer, ip netip.Addr, now time.Time, stale bool, as authScheme) {
	res := s.response(req, as.code, as.reason)
	res.AppendHeader(sip.NewHeader(as.challengeIn, s.nonces.challenge(s.realm(req), now, ip, stale)))
	s.send(res, src)
}

// bindLocal registers contact for user without authentication, for the
// box's own user agents (the browser bridge); the returned function
// removes the binding.
func (s *Server) bindLocal(user string, contact sip.Uri) func() {
	key := contact.String()
	b := binding{contact: contact, key: key, expires: s.now().AddDate(50, 0, 0), callID: "local", agent: "browser"}
	s.reg.mu.Lock()
	bs := slices.DeleteFunc(s.reg.users[user], func(b binding) bool { return b.key == key })
	s.reg.users[user] = append(bs, b)
	s.reg.mu.Unlock()
	return func() {
		s.reg.mu.Lock()
		defer s.reg.mu.Unlock()
		bs := slices.DeleteFunc(s.reg.users[user], func(b binding) bool { return b.key == key })
		if len(bs) == 0 {
			delete(s.reg.users, user)
		} else {
			s.reg.users[user] = bs
		}
	}
}
