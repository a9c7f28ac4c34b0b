//go:build !router

package appliance

import (
	"net/http"
	"strings"
)

// settingsReset handles the Settings page's factory reset form: the
// administrator's password and the word resetConfirm. The box then
// restarts as a fresh one: new identity, no community, a new setup code.
func (h *handler) settingsReset(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	p, _ := who(r)
	fail := func(code int, field, msg string) {
		b := h.cfg.auth.accounts.box()
		h.renderSettings(w, r, code, settingsForm{Name: h.boxName(), Location: b.Location, Reset: resetForm{Field: field, Error: msg}})
	}
	if strings.TrimSpace(strings.ToLower(r.PostFormValue("confirm"))) != resetConfirm {
		fail(http.StatusBadRequest, "reset-confirm", `Type "reset" to confirm.`)
		return
	}
	if _, ok := h.cfg.auth.authenticate(p.account, r.PostFormValue("password")); !ok {
		fail(http.StatusUnauthorized, "reset-password", "The password is wrong.")
		return
	}
	if err := requestFactoryReset(h.cfg.stateDir); err != nil {
		h.cfg.logger.Error("factory reset failed", "error", err)
		fail(http.StatusInternalServerError, "", "The factory reset could not be started: "+err.Error())
		return
	}
	h.cfg.logger.Warn("factory reset requested, restarting", "account", p.account)
	if h.cfg.restart != nil {
		h.cfg.restart()
	}
	d := h.pageFor(r, "Factory reset", "")
	d.Nav, d.CSRF, d.User = nil, "", ""
	h.render(w, http.StatusOK, h.panel.message, struct {
		pageData
		Heading, Message string
	}{d, "Factory reset", "cloudboxd restarts now as a new box: new keys, no community, no accounts. Its new setup code is shown on its console and written to the boot partition."})
}
