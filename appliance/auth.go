package appliance

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"
)

// Who may use what (see README "Accounts and security"):
//
//   - Without an account: the login page, the wizard (until setup is done;
//     it needs the setup code), /static/, /healthz and a reduced GET
//     /api/v1/status.
//   - Members: every page and GET endpoint, publishing and removing
//     services, their own password and API tokens.
//   - Administrators: also accounts, joining or founding a community,
//     invitations and revocation.
//
// A browser authenticates with the session cookie; every state-changing
// request of a session must carry its CSRF token (form field csrf, or
// header X-CSRF-Token for the API), on top of Go's CrossOriginProtection
// (Sec-Fetch-Site/Origin), which older browsers do not support fully. API
// clients send "Authorization: Bearer <token>" with a token created on the
// Accounts page (or the --api-token-file of cloudboxd); a bearer token is
// never sent by a browser on its own, so it needs no CSRF token.

// csrfField and csrfHeader carry a session's CSRF token.
const (
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"
)

// minAdminToken is the shortest token accepted in an admin token file.
const minAdminToken = 32

// authService holds accounts, sessions and limiters; it is safe for
// concurrent use.
type authService struct {
	accounts *accountStore
	sessions *sessionStore
	limiter  *limiter
	// adminTokenHash is the SHA-256 of the token of Config.AdminTokenFile;
	// zero when there is none.
	adminTokenHash [32]byte
	hasAdminToken  bool
	setup          *setupCode
	now            func() time.Time
	logger         *slog.Logger
}

// authConfig configures newAuth.
type authConfig struct {
	stateDir       string
	adminTokenFile string // "" for none
	setupCodeFile  string // "" for <stateDir>/setup-code.txt
	console        string // device the setup code is shown on, "" for none
	node           string // the box's name, shown with the code
	now            func() time.Time
	logger         *slog.Logger
}

// newAuth opens the accounts in stateDir and, when setup is not done, makes
// a new setup code, logs it and writes it to its file.
func newAuth(cfg authConfig) (*authService, error) {
	store, err := openAccounts(cfg.stateDir)
	if err != nil {
		return nil, err
	}
	a := &authService{accounts: store, sessions: newSessionStore(cfg.now), limiter: newLimiter(cfg.now), now: cfg.now, logger: cfg.logger}
	if cfg.adminTokenFile != "" {
		b, err := os.ReadFile(cfg.adminTokenFile)
		if err != nil {
			return nil, fmt.Errorf("reading the admin API token: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if len(tok) < minAdminToken {
			return nil, fmt.Errorf("the admin API token in %s has %d characters, want at least %d", cfg.adminTokenFile, len(tok), minAdminToken)
		}
		a.adminTokenHash, a.hasAdminToken = sha256.Sum256([]byte(tok)), true
	}
	if !store.setupDone() {
		path := cfg.setupCodeFile
		if path == "" {
			path = defaultSetupCodeFile(cfg.stateDir)
		}
		if a.setup, err = newSetupCode(path); err != nil {
			return nil, err
		}
		cfg.logger.Info("first boot: open the panel and enter the setup code", "setup_code", a.setup.code, "file", path)
		if cfg.console != "" {
			if err := showOnConsole(cfg.console, cfg.node, a.setup.code); err != nil {
				cfg.logger.Warn("showing the setup code on the console failed", "console", cfg.console, "error", err)
			}
		}
	}
	return a, nil
}

// principal is who makes a request.
type principal struct {
	account string
	role    string
	// session is nil for an API token.
	session *session
	wizard  bool
}

type principalKey struct{}

// identify finds the principal of r: its bearer token, else its session
// cookie. ok is false for anonymous requests and for a bearer token that
// is not valid (bad says so, to answer 401 rather than fall back to the
// cookie).
func (a *authService) identify(r *http.Request) (p principal, ok, bad bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, found := strings.CutPrefix(h, "Bearer ")
		if !found {
			return p, false, true
		}
		tok = strings.TrimSpace(tok)
		if a.hasAdminToken {
			sum := sha256.Sum256([]byte(tok))
			if subtle.ConstantTimeCompare(sum[:], a.adminTokenHash[:]) == 1 {
				return principal{account: "api-token-file", role: roleAdmin}, true, false
			}
		}
		acc, found := a.accounts.tokenAccount(tok)
		if !found {
			return p, false, true
		}
		return principal{account: acc.Name, role: acc.Role}, true, false
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return p, false, false
	}
	ss, found := a.sessions.lookup(c.Value)
	if !found {
		return p, false, false
	}
	name, role, wizard := a.sessions.identity(ss)
	if !wizard {
		// An account deleted or demoted since login: its sessions end
		// with it.
		acc, found := a.accounts.lookup(name)
		if !found {
			a.sessions.delete(ss)
			return p, false, false
		}
		role = acc.Role
	}
	return principal{account: name, role: role, session: ss, wizard: wizard}, true, false
}

// who returns the principal that the auth middleware found for r.
func who(r *http.Request) (principal, bool) {
	p, ok := r.Context().Value(principalKey{}).(principal)
	return p, ok
}

func withPrincipal(r *http.Request, p principal) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
}

// allows reports whether p has role.
func (p principal) allows(role string) bool {
	return p.role == roleAdmin || p.role == role
}

func isSafeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// csrfOK reports whether a state-changing request of p carries the CSRF
// token of its session; API tokens need none. It reads the form, so the
// caller must have bounded the body.
func csrfOK(r *http.Request, p principal) bool {
	if p.session == nil || isSafeMethod(r.Method) {
		return true
	}
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	return p.session.checkCSRF(got)
}

// maxFormBody bounds the body of the panel's forms.
const maxFormBody = 64 << 10

// pageAuth lets through requests of a non-wizard principal with role;
// others are redirected to the wizard (setup not done) or the login page,
// or refused (wrong role, missing CSRF token).
func (h *handler) pageAuth(role string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := h.cfg.auth
		p, ok, _ := a.identify(r)
		switch {
		case ok && p.session == nil:
			// API tokens may use the forms too (scripts).
		case !a.accounts.setupDone():
			http.Redirect(w, r, "/setup", http.StatusSeeOther)
			return
		case !ok || p.wizard:
			if !isSafeMethod(r.Method) {
				h.forbidden(w, r, "You are not logged in (or your session ended). Log in and try again.")
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if !p.allows(role) {
			h.forbidden(w, r, "Only an administrator of this box may do this. Ask one, or log in as one.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, formLimit(r))
		if !csrfOK(r, p) {
			h.forbidden(w, r, "The form was missing its security token or it expired. Go back, reload the page and send it again.")
			return
		}
		next(w, withPrincipal(r, p))
	}
}

// apiAuth is pageAuth for the API: it answers 401 or 403 with JSON.
func (h *handler) apiAuth(role string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok, bad := h.cfg.auth.identify(r)
		if !ok || p.wizard {
			msg := "log in on the panel, or send Authorization: Bearer <token> with an API token created on its Accounts page"
			if bad {
				msg = "the API token is not valid (deleted, or mistyped); " + msg
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="cloudbox"`)
			writeJSON(w, http.StatusUnauthorized, errorResponse{Error: msg})
			return
		}
		if !p.allows(role) {
			writeJSON(w, http.StatusForbidden, errorResponse{Error: "this needs an administrator's account or token"})
			return
		}
		if !isSafeMethod(r.Method) && p.session != nil && !p.session.checkCSRF(r.Header.Get(csrfHeader)) {
			writeJSON(w, http.StatusForbidden, errorResponse{Error: "a request with the session cookie must carry the header " + csrfHeader + "; API clients use a bearer token instead"})
			return
		}
		next(w, withPrincipal(r, p))
	}
}

// optionalAuth finds the principal, if any, and lets every request through.
func (h *handler) optionalAuth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p, ok, _ := h.cfg.auth.identify(r); ok && !p.wizard {
			r = withPrincipal(r, p)
		}
		next(w, r)
	}
}

func (h *handler) forbidden(w http.ResponseWriter, r *http.Request, msg string) {
	h.render(w, http.StatusForbidden, h.panel.message, struct {
		pageData
		Heading, Message string
	}{h.pageFor(r, "Not allowed", ""), "Not allowed", msg})
}

// localPath returns next if it is a path on this box, else "/".
func localPath(next string) string {
	u, err := url.Parse(next)
	if err != nil || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return next
}

// login shows and handles the login form.
func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	a := h.cfg.auth
	if !a.accounts.setupDone() {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return
	}
	next := localPath(r.FormValue("next"))
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.loginPage(w, r, http.StatusOK, "", "", next)
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	name := strings.TrimSpace(strings.ToLower(r.PostFormValue("username")))
	password := r.PostFormValue("password")
	keys := map[string]limit{clientKey(r): loginPerClient, "account:" + name: loginPerAccount}
	if d := a.limiter.wait(keys); d > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(d.Seconds()))))
		h.loginPage(w, r, http.StatusTooManyRequests, name,
			fmt.Sprintf("Too many failed attempts. Wait %d seconds and try again.", int(math.Ceil(d.Seconds()))), next)
		return
	}
	acc, ok := a.accounts.authenticate(name, password)
	if !ok {
		a.limiter.fail(keys)
		a.logger.Warn("login failed", "account", name, "client", clientKey(r))
		h.loginPage(w, r, http.StatusUnauthorized, name, "Wrong name or password.", next)
		return
	}
	_, value := a.sessions.create(acc.Name, acc.Role, false)
	setSessionCookie(w, r, value)
	if acc.Lang != "" {
		setLangCookie(w, r, acc.Lang)
	}
	a.logger.Info("login", "account", acc.Name, "client", clientKey(r))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// loginData is what the login page shows.
type loginData struct {
	pageData
	Username, Error, Next string
}

func (h *handler) loginPage(w http.ResponseWriter, r *http.Request, code int, name, msg, next string) {
	h.render(w, code, h.panel.login, loginData{h.pageFor(r, "Log in", ""), name, msg, next})
}

// logout ends the session.
func (h *handler) logout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	if p, ok := who(r); ok && p.session != nil {
		h.cfg.auth.sessions.delete(p.session)
	}
	clearSessionCookie(w, r)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// showOnConsole writes the box's name, LAN addresses and setup code to the
// console device (HDMI screen and serial port on a box), where the person
// who plugged the box in reads them; a neighbour on the LAN cannot.
func showOnConsole(console, node, code string) error {
	f, err := os.OpenFile(console, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	var addrs []string
	for _, p := range localPrefixes() {
		addrs = append(addrs, "http://"+netip.AddrPortFrom(p.Addr(), 80).String()+"/")
	}
	msg := fmt.Sprintf("\r\n==== cloudbox %q ====\r\nPanel: http://cloudbox.local/ %s\r\nSetup code: %s\r\n\r\n",
		node, strings.Join(addrs, " "), code)
	_, err = f.WriteString(msg)
	return errors.Join(err, f.Close())
}
