package appliance

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// resetMarker, in the state directory, asks the next start to erase the
// state: a factory reset. It is written before the restart and removed
// last, so a power cut in the middle of the erase finishes it at the next
// start.
const resetMarker = ".factory-reset"

// resetConfirm is what an administrator types to confirm a factory reset.
const resetConfirm = "reset"

// requestFactoryReset marks stateDir for erasure at the next start.
func requestFactoryReset(stateDir string) error {
	if err := atomicfile.Write(filepath.Join(stateDir, resetMarker), []byte("factory reset requested\n"), 0o600); err != nil {
		return fmt.Errorf("marking the factory reset: %w", err)
	}
	return nil
}

// applyFactoryReset erases everything in stateDir if a factory reset was
// requested; it runs at start, before anything reads the state, like
// applyRestore. It reports whether it erased the state.
func applyFactoryReset(stateDir string) (bool, error) {
	if fi, err := os.Stat(stateDir); err != nil || !fi.IsDir() {
		return false, nil // opening the state reports it
	}
	marker := filepath.Join(stateDir, resetMarker)
	if _, err := os.Lstat(marker); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("reading the factory reset marker: %w", err)
	}
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		return false, fmt.Errorf("factory reset: %w", err)
	}
	for _, e := range entries {
		if e.Name() == resetMarker {
			continue
		}
		if err := os.RemoveAll(filepath.Join(stateDir, e.Name())); err != nil {
			return false, fmt.Errorf("factory reset: %w", err)
		}
	}
	if err := atomicfile.SyncDir(stateDir); err != nil {
		return false, fmt.Errorf("factory reset: %w", err)
	}
	if err := os.Remove(marker); err != nil {
		return false, fmt.Errorf("factory reset: %w", err)
	}
	return true, atomicfile.SyncDir(stateDir)
}

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

// resetForm is the state of the factory reset form.
type resetForm struct {
	Field, Error string
}
