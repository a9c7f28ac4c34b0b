package appliance

import (
	"net/http"
	"strings"
)

// The Settings page and GET/POST /api/v1/settings change what can change
// while the box runs: its name as the panel shows it (and as the wizard
// uses it when the box founds or joins a community later) and its
// location. They are kept with the accounts (PanelDir), written atomically.
// Flags of cloudboxd (DNS upstreams, gateway, ports) stay flags: changing
// them needs a restart of the components that use them.

// settingsJSON is the body of GET and POST /api/v1/settings.
type settingsJSON struct {
	Name     string `json:"name"`
	Location string `json:"location"`
}

// settingsForm is the state of the Settings page's forms.
type settingsForm struct {
	Name, Location string
	// Field and Error name a field that is wrong; Error alone is a
	// problem of the whole form. Done says what was saved.
	Field, Error, Done string
	// Backup is the state of the backup and restore forms (backup.go).
	Backup backupForm
	// Reset is the state of the factory reset form (reset.go).
	Reset resetForm
	// Upstreams is the network form's DNS upstreams as typed, after an
	// error (network.go).
	Upstreams string
}

func (h *handler) settingsPage(w http.ResponseWriter, r *http.Request) {
	b := h.cfg.auth.accounts.box()
	h.renderSettings(w, r, http.StatusOK, settingsForm{Name: h.boxName(), Location: b.Location})
}

func (h *handler) renderSettings(w http.ResponseWriter, r *http.Request, code int, f settingsForm) {
	in := h.cfg.https.ca.info()
	var inUse []string
	if h.cfg.dns != nil {
		inUse = h.cfg.dns.view().Upstreams
	}
	saved, _ := loadNetwork(h.cfg.stateDir)
	if f.Upstreams == "" && f.Field != "upstreams" {
		f.Upstreams = strings.Join(saved.DNSUpstreams, " ")
	}
	h.render(w, code, h.panel.settings, struct {
		pageData
		Form      settingsForm
		NodeID    string
		Node      string
		TLS       tlsInfo
		HTTPSURL  string
		Upstreams []string
	}{h.pageFor(r, "Settings", "/settings"), f, h.cfg.node.ID(), h.cfg.node.Name, in, h.httpsURL(r), inUse})
}

// settingsBox saves the box's name and location from the Settings page.
func (h *handler) settingsBox(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	b := boxSettings{Name: strings.TrimSpace(strings.ToLower(r.PostFormValue("name"))), Location: strings.TrimSpace(r.PostFormValue("location"))}
	f := settingsForm{Name: b.Name, Location: b.Location}
	if f.Field, f.Error = checkBox(b); f.Error != "" {
		h.renderSettings(w, r, http.StatusBadRequest, f)
		return
	}
	if err := h.cfg.auth.accounts.setBox(b); err != nil {
		h.cfg.logger.Error("saving settings failed", "error", err)
		f.Error = "The settings could not be saved (" + err.Error() + "); nothing changed. Try again, or look at the log."
		h.renderSettings(w, r, http.StatusInternalServerError, f)
		return
	}
	h.cfg.logger.Info("settings changed", "name", b.Name)
	f.Done = "Saved."
	h.renderSettings(w, r, http.StatusOK, f)
}

// settingsAPI answers GET (members) and POST (administrators)
// /api/v1/settings.
func (h *handler) settingsAPI(w http.ResponseWriter, r *http.Request) {
	if isGet(r) {
		writeJSON(w, http.StatusOK, settingsJSON{Name: h.boxName(), Location: h.cfg.auth.accounts.box().Location})
		return
	}
	if p, _ := who(r); !p.allows(roleAdmin) {
		writeJSON(w, http.StatusForbidden, errorResponse{Error: "changing settings needs an administrator's account or token"})
		return
	}
	var in settingsJSON
	if !decodeJSONPost(w, r, maxFormBody, &in, `{"name": "rooftop", "location": "Carrer Major 5"}`) {
		return
	}
	b := boxSettings{Name: strings.TrimSpace(strings.ToLower(in.Name)), Location: strings.TrimSpace(in.Location)}
	if field, msg := checkBox(b); msg != "" {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: field + ": " + msg})
		return
	}
	if err := h.cfg.auth.accounts.setBox(b); err != nil {
		writeJSON(w, http.StatusInternalServerError, errorResponse{Error: "saving the settings: " + err.Error()})
		return
	}
	h.cfg.logger.Info("settings changed", "name", b.Name)
	writeJSON(w, http.StatusOK, settingsJSON(b))
}

// resetForm is the state of the factory reset form.
type resetForm struct {
	Field, Error string
}
