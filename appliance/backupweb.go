package appliance

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// maxRestoreBody bounds the body of a restore: the backup and the form.
const maxRestoreBody = maxBackupSize + 1<<20

// formLimit is the body limit of a form: larger for the uploads of a
// restore.
func formLimit(r *http.Request) int64 {
	switch r.URL.Path {
	case "/settings/restore", "/setup/restore", "/api/v1/restore":
		return maxRestoreBody
	}
	return maxFormBody
}

// backupForm is the state of the backup and restore forms; Field names
// the input that is wrong.
type backupForm struct {
	Field, Error, Done string
}

// makeBackup returns the encrypted backup of the box's state and its file
// name.
func (h *handler) makeBackup(password string) ([]byte, string, error) {
	if !backupMu.TryLock() {
		return nil, "", errBackupIsRunning
	}
	defer backupMu.Unlock()
	now := h.cfg.now()
	p, err := collectBackup(h.cfg.stateDir, h.cfg.node.ID(), now)
	if err != nil {
		return nil, "", err
	}
	b, err := sealBackup(p, password)
	if err != nil {
		return nil, "", fmt.Errorf("encrypting the backup: %w", err)
	}
	return b, fmt.Sprintf("cloudbox-%s-%s%s", h.cfg.node.Name, now.UTC().Format("20060102-1504"), BackupExt), nil
}

// restoreBackup checks a backup and stages it for the next start, then
// asks the daemon to restart. Nothing changes unless it returns nil.
func (h *handler) restoreBackup(b []byte, password string) error {
	if !backupMu.TryLock() {
		return errBackupIsRunning
	}
	defer backupMu.Unlock()
	p, err := openBackup(b, password)
	if err != nil {
		return err
	}
	if err := stageRestore(h.cfg.stateDir, p); err != nil {
		return err
	}
	h.cfg.logger.Info("backup restored, restarting", "node_id", p.NodeID, "created", p.Created)
	if h.cfg.restart != nil {
		h.cfg.restart()
	}
	return nil
}

// settingsBackup answers the Settings page's backup form with the file.
func (h *handler) settingsBackup(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	pw := r.PostFormValue("password")
	if msg := checkNewPassword(pw, r.PostFormValue("password2")); msg != "" {
		h.settingsBackupError(w, r, http.StatusBadRequest, "backup-password", msg)
		return
	}
	b, name, err := h.makeBackup(pw)
	if err != nil {
		h.cfg.logger.Error("backup failed", "error", err)
		h.settingsBackupError(w, r, http.StatusInternalServerError, "", "The backup failed: "+err.Error()+".")
		return
	}
	h.cfg.logger.Info("backup downloaded", "bytes", len(b))
	writeBackup(w, b, name)
}

func writeBackup(w http.ResponseWriter, b []byte, name string) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

func (h *handler) settingsBackupError(w http.ResponseWriter, r *http.Request, code int, field, msg string) {
	b := h.cfg.auth.accounts.box()
	f := settingsForm{Name: h.boxName(), Location: b.Location, Backup: backupForm{Field: field, Error: msg}}
	if field == "" {
		f.Error = msg
	}
	h.renderSettings(w, r, code, f)
}

// restoreMessage maps an error of restoreBackup to the form field and a
// message for people.
func restoreMessage(err error) (field, msg string) {
	switch {
	case errors.Is(err, errBackupOpen):
		return "restore-password", "The backup could not be opened: " + err.Error() + ". Nothing was changed."
	case errors.Is(err, errNotBackup), errors.Is(err, errBackupVersion), errors.Is(err, errBackupParams),
		errors.Is(err, errBackupContent), errors.Is(err, errBackupTooLarge):
		return "restore-file", "The backup was refused: " + err.Error() + ". Nothing was changed."
	case errors.Is(err, errBackupIsRunning):
		return "", err.Error() + "."
	}
	return "", "The restore failed: " + err.Error() + ". Nothing was changed."
}

// readRestoreForm reads the backup file and password of a restore form.
func readRestoreForm(r *http.Request) ([]byte, string, error) {
	f, _, err := r.FormFile("backup")
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, "", errBackupTooLarge
		}
		return nil, "", fmt.Errorf("%w (no file was sent)", errNotBackup)
	}
	defer f.Close()
	b, err := readBackupUpload(f)
	return b, r.PostFormValue("password"), err
}

// restoreUpload restores the backup of a restore form.
func (h *handler) restoreUpload(r *http.Request) error {
	b, pw, err := readRestoreForm(r)
	if err == nil {
		err = h.restoreBackup(b, pw)
	}
	if err != nil {
		h.cfg.logger.Warn("restore refused", "error", err)
	}
	return err
}

// settingsRestore restores a backup uploaded on the Settings page.
func (h *handler) settingsRestore(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	if err := h.restoreUpload(r); err != nil {
		field, msg := restoreMessage(err)
		h.settingsBackupError(w, r, http.StatusBadRequest, field, msg)
		return
	}
	h.restored(w, r)
}

// restored tells that the box restarts with the restored state.
func (h *handler) restored(w http.ResponseWriter, r *http.Request) {
	d := h.pageFor(r, "Restored", "")
	d.Nav, d.CSRF, d.User = nil, "", ""
	h.render(w, http.StatusOK, h.panel.message, struct {
		pageData
		Heading, Message string
	}{d, "Backup restored", "cloudboxd restarts now with the restored state. In a few seconds, log in with an account of the backup."})
}

// setupRestore restores a backup in the first-boot wizard, instead of
// setting up a new box.
func (h *handler) setupRestore(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Redirect(w, r, "/setup/account", http.StatusSeeOther)
		return
	}
	if err := h.restoreUpload(r); err != nil {
		field, msg := restoreMessage(err)
		h.wizardPage(w, r, http.StatusBadRequest, wizardData{Step: "account", Field: field, Error: msg})
		return
	}
	// The restored box has its accounts: the code is of no use any more.
	if err := h.cfg.auth.setup.remove(); err != nil {
		h.cfg.logger.Warn("removing the setup code failed", "error", err)
	}
	h.restored(w, r)
}

// backupAPI answers POST /api/v1/backup {"password": "..."} with the file.
func (h *handler) backupAPI(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Password string `json:"password"`
	}
	if !decodeJSONPost(w, r, maxFormBody, &in, `{"password": "a long backup password"}`) {
		return
	}
	if msg := checkNewPassword(in.Password, in.Password); msg != "" {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: strings.ToLower(msg[:1]) + msg[1:]})
		return
	}
	b, name, err := h.makeBackup(in.Password)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorResponse{Error: "making the backup: " + err.Error()})
		return
	}
	writeBackup(w, b, name)
}

// restoreAPI answers POST /api/v1/restore, a multipart form with the file
// "backup" and the field "password": 202 when the box restarts with it.
func (h *handler) restoreAPI(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, errorResponse{Error: "use POST with a multipart form: backup=@FILE, password=..."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRestoreBody)
	if err := h.restoreUpload(r); err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, errBackupIsRunning) {
			code = http.StatusConflict
		}
		writeJSON(w, code, errorResponse{Error: "restore refused, nothing changed: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusAccepted, struct {
		Restarting bool `json:"restarting"`
	}{true})
}
