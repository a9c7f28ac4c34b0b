package appliance

import (
	"cmp"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
	"github.com/cloudbox/cloudbox/overlay/community"
	"github.com/cloudbox/cloudbox/overlay/membership"
	"github.com/cloudbox/cloudbox/services"
)

// SetupCodeFile is the default name, in the state directory, of the file
// that holds the first-boot wizard's setup code (Config.SetupCodeFile).
const SetupCodeFile = "setup-code.txt"

func defaultSetupCodeFile(stateDir string) string { return filepath.Join(stateDir, SetupCodeFile) }

// setupAlphabet has no letters that look alike (0/O, 1/I/L).
const setupAlphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

// setupCodeLen is the length of a setup code without dashes: 12 symbols
// of 31, about 59 bits, against at most codePerBox guesses.
const setupCodeLen = 12

// setupCode is the one-time code that proves physical possession of a
// fresh box: it is printed on the console (the log) and written to a file
// (on a box, the boot partition, readable only by taking the SD card out).
// A neighbour on the same LAN sees neither.
type setupCode struct {
	code string // "ABCD-EFGH-JKMN"
	path string
}

func newSetupCode(path string) (*setupCode, error) {
	var b strings.Builder
	for i := range setupCodeLen {
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(setupAlphabet[randIndex(len(setupAlphabet))])
	}
	s := &setupCode{code: b.String(), path: path}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the directory of the setup code: %w", err)
	}
	text := "cloudbox setup code: " + s.code + "\nOpen the box's panel (http://cloudbox.local/) and enter it to set the box up.\n"
	if err := atomicfile.Write(path, []byte(text), 0o600); err != nil {
		return nil, fmt.Errorf("writing the setup code: %w", err)
	}
	return s, nil
}

// randIndex returns a uniform random number in [0, n), n < 256.
func randIndex(n int) int {
	limit := 256 - 256%n
	var b [1]byte
	for {
		rand.Read(b[:])
		if int(b[0]) < limit {
			return int(b[0]) % n
		}
	}
}

// normalizeCode drops what people add or change when typing a code.
func normalizeCode(s string) string {
	s = strings.ToUpper(s)
	return strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
}

func (s *setupCode) check(input string) bool {
	return subtle.ConstantTimeCompare([]byte(normalizeCode(input)), []byte(normalizeCode(s.code))) == 1
}

// remove deletes the code's file once setup is done.
func (s *setupCode) remove() error {
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the setup code: %w", err)
	}
	return nil
}

// boxNameRE is what the wizard accepts as a box name: a DNS label, since
// the name becomes <name>.cb.home.arpa and <name>.local.
var boxNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// maxLocation bounds the box's location text.
const maxLocation = 120

// checkBox validates the box's settings; a problem comes back as the form
// field and a message for people.
func checkBox(b boxSettings) (field, msg string) {
	switch {
	case !boxNameRE.MatchString(b.Name):
		return "name", "The name must be 1 to 63 lowercase letters, digits or '-', not starting or ending with '-' (it becomes the box's address, like " + "name.local)."
	case len(b.Location) > maxLocation:
		return "location", fmt.Sprintf("The location is too long: at most %d characters.", maxLocation)
	}
	return "", ""
}

// communityAdmin is what the wizard and the community page need beyond
// overlaySource; *overlayService implements it.
type communityAdmin interface {
	// found creates a community with this box as its first member, holding
	// the root key, and starts the overlay.
	found(name string, v4 netip.Prefix, memberName string) error
	// invite returns a one-time invitation token for a new box.
	newInvitation(name string, valid time.Duration) (string, error)
}

// foundedCommunity is a community found created, handed to run.
type foundedCommunity struct {
	community membership.Community
	self      *membership.Membership
}

func (o *overlayService) found(name string, v4 netip.Prefix, memberName string) error {
	if o.store == nil {
		return errOverlayDisabled
	}
	o.mu.Lock()
	notMember := o.notMember
	o.mu.Unlock()
	if !notMember {
		return errAlreadyMember
	}
	if err := checkTUN(o.cfg.InterfaceName); err != nil {
		return err
	}
	adm, own, err := community.Init(o.store, name, v4, memberName, o.pub, o.now(), nil)
	if err != nil {
		return fmt.Errorf("creating the community: %w", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	select {
	case o.joins <- joinRequest{founded: &foundedCommunity{community: adm.Community(), self: own}}:
	default:
		return errAlreadyMember
	}
	o.notMember = false
	o.phase, o.problem = "starting", ""
	o.changed.Notify()
	o.log.Info("community founded", "community", name, "name", memberName, "ipv4", own.Certificate.IPv4)
	return nil
}

// errNoEndpoint means the box has no address another box could join
// through.
var errNoEndpoint = errors.New("this box has no network address other boxes can reach; connect it to the network first")

func (o *overlayService) newInvitation(name string, valid time.Duration) (string, error) {
	o.mu.Lock()
	run := o.running
	o.mu.Unlock()
	if run == nil {
		return "", errOverlayNotRunning
	}
	if !run.admin {
		return "", errors.New("this box does not hold the community's root key; create the invitation on the box that founded the community")
	}
	eps := o.selfEndpoints()
	if len(eps) == 0 {
		return "", errNoEndpoint
	}
	adm, err := community.Open(o.store, nil)
	if err != nil {
		return "", fmt.Errorf("opening the community's root key: %w", err)
	}
	inv, err := adm.Invite(community.InviteRequest{Name: name, Expires: o.now().Add(valid), Bootstrap: eps})
	if err != nil {
		return "", fmt.Errorf("creating the invitation: %w", err)
	}
	o.log.Info("invitation created", "name", name, "bootstrap", eps)
	return inv.Token(), nil
}

// inviteValidity is how long a panel invitation can be redeemed.
const inviteValidity = 72 * time.Hour

// wizardData is what the wizard's template shows.
type wizardData struct {
	pageData
	Step      string // "code", "account", "box", "community", "member"
	Error     string
	Field     string // the field the error is about
	Username  string
	BoxName   string
	Location  string
	Community string
	Range     string
	Token     string
	Overlay   overlayView
}

func (h *handler) wizardPage(w http.ResponseWriter, r *http.Request, code int, d wizardData) {
	d.pageData = h.pageFor(r, "Set up this box", "")
	if d.Username == "" {
		d.Username = "admin"
	}
	if d.Range == "" {
		d.Range = membership.DefaultIPv4Prefix.String()
	}
	h.render(w, code, h.panel.setup, d)
}

// wizardAuth lets through the requests of a wizard session (CSRF-checked);
// after setup it sends people to the dashboard, before they proved
// possession to the first step.
func (h *handler) wizardAuth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := h.cfg.auth
		if a.accounts.setupDone() {
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		p, ok, _ := a.identify(r)
		if !ok || !p.wizard {
			http.Redirect(w, r, "/setup", http.StatusSeeOther)
			return
		}
		if !isSafeMethod(r.Method) && r.Method != http.MethodPost {
			w.Header().Set("Allow", "GET, HEAD, POST")
			http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
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

// setup is the wizard's first step: the setup code.
func (h *handler) setup(w http.ResponseWriter, r *http.Request) {
	a := h.cfg.auth
	if a.accounts.setupDone() {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if p, ok, _ := a.identify(r); ok && p.wizard && isSafeMethod(r.Method) {
		next := "/setup/account"
		if p.account != "" {
			next = "/setup/box"
		}
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.wizardPage(w, r, http.StatusOK, wizardData{Step: "code"})
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	keys := map[string]limit{"setup-" + clientKey(r): codePerClient, "setup-box": codePerBox}
	if d := a.limiter.wait(keys); d > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(d.Seconds()))))
		h.wizardPage(w, r, http.StatusTooManyRequests, wizardData{Step: "code", Field: "code",
			Error: fmt.Sprintf("Too many wrong codes. Wait %d seconds and try again.", int(math.Ceil(d.Seconds())))})
		return
	}
	if a.setup == nil || !a.setup.check(r.PostFormValue("code")) {
		a.limiter.fail(keys)
		a.logger.Warn("wrong setup code", "client", clientKey(r))
		h.wizardPage(w, r, http.StatusUnauthorized, wizardData{Step: "code", Field: "code",
			Error: "This is not the setup code of this box. It is shown on the box's screen and in the file " + SetupCodeFile + " on its SD card."})
		return
	}
	// Whoever proves possession now starts afresh; an earlier unfinished
	// attempt's administrator is forgotten.
	if err := a.accounts.resetUnfinished(); err != nil {
		h.wizardPage(w, r, http.StatusInternalServerError, wizardData{Step: "code", Error: err.Error()})
		return
	}
	_, value := a.sessions.create("", "", true)
	setSessionCookie(w, r, value)
	a.logger.Info("setup code accepted", "client", clientKey(r))
	http.Redirect(w, r, "/setup/account", http.StatusSeeOther)
}

// setupAccount sets the administrator's name and password.
func (h *handler) setupAccount(w http.ResponseWriter, r *http.Request) {
	p, _ := who(r)
	if r.Method != http.MethodPost {
		h.wizardPage(w, r, http.StatusOK, wizardData{Step: "account", Username: p.account})
		return
	}
	name := strings.TrimSpace(strings.ToLower(r.PostFormValue("username")))
	password := r.PostFormValue("password")
	d := wizardData{Step: "account", Username: name}
	if !accountNameRE.MatchString(name) {
		d.Field, d.Error = "username", "The name must be 1 to 32 lowercase letters, digits, '.', '_' or '-'."
	} else if msg := checkNewPassword(password, r.PostFormValue("password2")); msg != "" {
		d.Field, d.Error = "password", msg
	}
	if d.Error != "" {
		h.wizardPage(w, r, http.StatusBadRequest, d)
		return
	}
	a := h.cfg.auth
	if err := a.accounts.resetUnfinished(); err != nil {
		h.wizardPage(w, r, http.StatusInternalServerError, wizardData{Step: "account", Error: err.Error()})
		return
	}
	if err := a.accounts.setAccount(name, roleAdmin, password, true, h.cfg.now()); err != nil {
		d.Error = err.Error()
		h.wizardPage(w, r, http.StatusInternalServerError, d)
		return
	}
	a.sessions.promote(p.session, name, roleAdmin, false)
	http.Redirect(w, r, "/setup/box", http.StatusSeeOther)
}

// setupBox sets the box's name and location.
func (h *handler) setupBox(w http.ResponseWriter, r *http.Request) {
	p, _ := who(r)
	if p.account == "" {
		http.Redirect(w, r, "/setup/account", http.StatusSeeOther)
		return
	}
	a := h.cfg.auth
	if r.Method != http.MethodPost {
		b := a.accounts.box()
		h.wizardPage(w, r, http.StatusOK, wizardData{Step: "box", BoxName: cmp.Or(b.Name, h.cfg.node.Name), Location: b.Location})
		return
	}
	b := boxSettings{Name: strings.TrimSpace(strings.ToLower(r.PostFormValue("name"))), Location: strings.TrimSpace(r.PostFormValue("location"))}
	d := wizardData{Step: "box", BoxName: b.Name, Location: b.Location}
	if d.Field, d.Error = checkBox(b); d.Error != "" {
		h.wizardPage(w, r, http.StatusBadRequest, d)
		return
	}
	if err := a.accounts.setBox(b); err != nil {
		d.Error = err.Error()
		h.wizardPage(w, r, http.StatusInternalServerError, d)
		return
	}
	http.Redirect(w, r, "/setup/community", http.StatusSeeOther)
}

// setupCommunity creates a community or joins one, then ends the wizard.
func (h *handler) setupCommunity(w http.ResponseWriter, r *http.Request) {
	p, _ := who(r)
	if p.account == "" {
		http.Redirect(w, r, "/setup/account", http.StatusSeeOther)
		return
	}
	v := h.overlayView()
	step := "community"
	if !v.NotMember {
		step = "member" // already a member (a reset panel), joining, or no overlay
	}
	if r.Method != http.MethodPost {
		h.wizardPage(w, r, http.StatusOK, wizardData{Step: step, Overlay: v})
		return
	}
	d := wizardData{Step: step, Overlay: v, Community: strings.TrimSpace(r.PostFormValue("community")),
		Range: strings.TrimSpace(r.PostFormValue("range")), Token: strings.TrimSpace(r.PostFormValue("token"))}
	switch action := r.PostFormValue("action"); {
	case step == "member" && action == "finish":
	case step == "community" && action == "create":
		prefix, err := netip.ParsePrefix(d.Range)
		switch {
		case d.Community == "" || len(d.Community) > 63:
			d.Field, d.Error = "community", "Give the community a name of 1 to 63 characters."
		case err != nil || !prefix.Addr().Is4() || prefix.Bits() > 24 || prefix.Bits() < 8:
			d.Field, d.Error = "range", "The address range must be an IPv4 prefix from /8 to /24, like 100.64.0.0/10."
		default:
			ca, ok := h.cfg.overlay.(communityAdmin)
			if !ok {
				d.Error = errOverlayDisabled.Error()
			} else if err := ca.found(d.Community, prefix, h.boxName()); err != nil {
				d.Error = err.Error() + "."
			}
		}
	case step == "community" && action == "join":
		if _, err := h.requestJoin(d.Token); err != nil {
			d.Field, d.Error = "token", err.Error()
		}
	default:
		d.Error = "Choose one of the options below."
	}
	if d.Error != "" {
		h.wizardPage(w, r, http.StatusBadRequest, d)
		return
	}
	a := h.cfg.auth
	if err := a.accounts.finishSetup(); err != nil {
		d.Error = err.Error()
		h.wizardPage(w, r, http.StatusInternalServerError, d)
		return
	}
	if a.setup != nil {
		if err := a.setup.remove(); err != nil {
			a.logger.Warn("removing setup code failed", "error", err)
		}
	}
	a.sessions.promote(p.session, p.account, roleAdmin, true)
	a.logger.Info("setup done", "admin", p.account)
	http.Redirect(w, r, "/setup/progress", http.StatusSeeOther)
}

// setupProgress shows how the overlay connects and the catalog syncs after
// the wizard; it reloads itself (a meta refresh, no script) until the
// overlay runs.
func (h *handler) setupProgress(w http.ResponseWriter, r *http.Request) {
	v := h.overlayView()
	nServices := -1
	if h.cfg.catalog != nil {
		if c := h.cfg.catalog.current(); c != nil {
			nServices = len(c.Services(services.Filter{}))
		}
	}
	d := struct {
		pageData
		Overlay  overlayView
		Services int
		Refresh  bool
	}{h.pageFor(r, "Getting ready", ""), v, nServices, !v.Running}
	d.pageData.Refresh = d.Refresh
	h.render(w, http.StatusOK, h.panel.progress, d)
}

// communityInvite creates an invitation on the community page.
func (h *handler) communityInvite(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, fmt.Sprintf("method %s not allowed; use POST", r.Method), http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimSpace(strings.ToLower(r.PostFormValue("name")))
	if name != "" && !boxNameRE.MatchString(name) {
		h.communityPage(w, r, http.StatusBadRequest, communityForm{InviteName: name,
			InviteError: "The name must be lowercase letters, digits or '-', or empty for box-N."})
		return
	}
	ca, ok := h.cfg.overlay.(communityAdmin)
	if !ok {
		h.communityPage(w, r, http.StatusServiceUnavailable, communityForm{InviteName: name, InviteError: errOverlayDisabled.Error()})
		return
	}
	h.inviteMu.Lock()
	tok, err := ca.newInvitation(name, inviteValidity)
	h.inviteMu.Unlock()
	if err != nil {
		h.communityPage(w, r, http.StatusConflict, communityForm{InviteName: name, InviteError: err.Error()})
		return
	}
	h.communityPage(w, r, http.StatusOK, communityForm{InviteName: name, Invitation: tok})
}
