package appliance

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/services/storage/vault"
)

// storageRoutes adds the routes of the vault backups and of the storage
// disk choice; member and admin wrap API handlers.
func (h *handler) storageRoutes(member, admin func(http.HandlerFunc) http.HandlerFunc) {
	h.mux.Handle("/api/v1/storage/backup", admin(h.apiVaultBackup))
	h.mux.Handle("/api/v1/storage/backup/restore", admin(h.apiVaultRestore))
	h.mux.Handle("/storage/backup", h.pageAuth(roleAdmin, h.storageBackupPage))
	h.mux.Handle("/storage/restore", h.pageAuth(roleAdmin, h.storageRestorePage))
	h.mux.Handle("/api/v1/storage/disk", admin(h.apiStorageDisk))
	h.mux.Handle("/storage/disk", h.pageAuth(roleAdmin, h.storageDiskPage))
}

// apiVaultBackup answers POST /api/v1/storage/backup: the box stores its
// configuration backup in the vault now, and answers with its capability.
func (h *handler) apiVaultBackup(w http.ResponseWriter, r *http.Request) {
	s, _, ok := h.storageFor(w, r)
	if !ok || !storageInProfile {
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, errorResponse{Error: "use POST to store the configuration backup in the vault now"})
		return
	}
	fi, c, err := s.backupToVault(r.Context(), true)
	if err != nil {
		code := http.StatusBadGateway
		if errors.Is(err, vault.ErrTooFewBoxes) {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, errorResponse{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusCreated, VaultStored{File: fi, Cap: c.String()})
}

// apiVaultRestore answers POST /api/v1/storage/backup/restore
// {"cap": "cbvault1:..."}: 202 when the box restarts with the backup's
// state.
func (h *handler) apiVaultRestore(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Cap string `json:"cap"`
	}
	if !decodeJSONPost(w, r, maxFormBody, &in, `{"cap": "cbvault1:..."}`) {
		return
	}
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(5 * time.Minute))
	if err := h.restoreFromVault(r.Context(), in.Cap); err != nil {
		h.cfg.logger.Warn("restore from the vault refused", "error", err)
		code := http.StatusBadRequest
		switch {
		case errors.Is(err, errBackupIsRunning):
			code = http.StatusConflict
		case errors.Is(err, vault.ErrTooFewShares), errors.Is(err, vault.ErrNotFound):
			code = http.StatusBadGateway
		}
		writeJSON(w, code, errorResponse{Error: "restore refused, nothing changed: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusAccepted, struct {
		Restarting bool `json:"restarting"`
	}{true})
}

// storageBackupPage stores the backup in the vault from the Storage page.
func (h *handler) storageBackupPage(w http.ResponseWriter, r *http.Request) {
	s, d, ok := h.storagePost(w, r)
	if !ok || !storageInProfile {
		return
	}
	if _, _, err := s.backupToVault(r.Context(), true); err != nil {
		h.renderStorage(w, r, http.StatusBadGateway, d.T("The backup was not stored: %s.", err.Error()), "")
		return
	}
	h.renderStorage(w, r, http.StatusOK, "", d.T("The configuration backup is stored in the vault."))
}

// storagePost starts a form of the Storage page: a GET goes back to the
// page, and without the storage component it answers 503. ok is false
// after it answered.
func (h *handler) storagePost(w http.ResponseWriter, r *http.Request) (*storageService, pageData, bool) {
	if r.Method != http.MethodPost {
		http.Redirect(w, r, "/storage", http.StatusSeeOther)
		return nil, pageData{}, false
	}
	s := h.cfg.storage
	if s == nil || !storageInProfile {
		http.Error(w, errNoStorage, http.StatusServiceUnavailable)
		return nil, pageData{}, false
	}
	return s, h.pageFor(r, "Storage", "/storage"), true
}

// storageRestorePage restores the box's state from a backup in the vault,
// by its capability.
func (h *handler) storageRestorePage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Redirect(w, r, "/storage", http.StatusSeeOther)
		return
	}
	if !storageInProfile {
		http.Error(w, errNoStorage, http.StatusServiceUnavailable)
		return
	}
	d := h.pageFor(r, "Storage", "/storage")
	if err := h.restoreFromVault(r.Context(), strings.TrimSpace(r.PostFormValue("cap"))); err != nil {
		h.cfg.logger.Warn("restore from the vault refused", "error", err)
		h.renderStorage(w, r, http.StatusBadRequest, d.T("The restore was refused, nothing changed: %s.", err.Error()), "")
		return
	}
	h.restored(w, r)
}
