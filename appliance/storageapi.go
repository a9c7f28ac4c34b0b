package appliance

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/services/storage"
	"github.com/cloudbox/cloudbox/services/storage/vault"
)

// StorageInfo is the body of GET /api/v1/storage.
type StorageInfo struct {
	Enabled bool `json:"enabled"`
	// Folder is the shared folder of the account asking.
	Folder *FolderInfo `json:"folder,omitempty"`
	// Accounts is every account's usage, for administrators.
	Accounts map[string]int64 `json:"accounts,omitempty"`
	Stats    *storage.Stats   `json:"stats,omitempty"`
	// Vault is the community vault as this box sees it.
	Vault *VaultInfo `json:"vault,omitempty"`
	// Disk is where the folders are and the disks that can hold them,
	// for administrators.
	Disk *DiskInfo `json:"disk,omitempty"`
}

// FolderInfo is an account's shared folder.
type FolderInfo struct {
	Account string         `json:"account"`
	WebDAV  string         `json:"webdav"`
	Used    int64          `json:"used"`
	Quota   int64          `json:"quota"`
	Links   []storage.Link `json:"links"`
}

// VaultInfo is the vault: this box's files, the space it offers, the
// boxes that offer space.
type VaultInfo struct {
	K      int              `json:"k"`
	N      int              `json:"n"`
	Offer  int64            `json:"offer"`
	Store  vault.StoreStats `json:"store"`
	Boxes  []vault.Box      `json:"boxes"`
	Files  []VaultFile      `json:"files"`
	Stats  vault.Stats      `json:"stats"`
	AtRisk []string         `json:"at_risk"`
	// Backup is the box's configuration backups in the vault, for
	// administrators.
	Backup *VaultBackupInfo `json:"backup,omitempty"`
}

// VaultFile is a vault file of this box with its read capability (shown
// to the account that stored it and to administrators).
type VaultFile struct {
	vault.FileInfo
	Cap string `json:"cap"`
}

// VaultStored is the answer of POST /api/v1/storage/vault.
type VaultStored struct {
	File vault.FileInfo `json:"file"`
	// Cap is the read capability: whoever has it can read the file.
	Cap string `json:"cap"`
}

func (h *handler) storageInfo(r *http.Request) StorageInfo {
	s := h.cfg.storage
	if s == nil || !storageInProfile {
		return StorageInfo{}
	}
	p, _ := who(r)
	info := StorageInfo{Enabled: true}
	used, _ := s.folders.Usage(p.account)
	info.Folder = &FolderInfo{Account: p.account, WebDAV: s.folders.Prefix() + "/", Used: used, Quota: s.folders.Quota(),
		Links: s.folders.Links(p.account)}
	if info.Folder.Links == nil {
		info.Folder.Links = []storage.Link{}
	}
	if p.allows(roleAdmin) {
		info.Accounts = s.folders.Accounts()
		st := s.folders.Stats()
		info.Stats = &st
	}
	v := &VaultInfo{K: s.cfg.VaultK, N: s.cfg.VaultN, Offer: s.cfg.VaultOffer, Store: s.store.Stats(),
		Boxes: s.vaultBoxes(), Stats: s.vault.Stats(), Files: []VaultFile{}, AtRisk: []string{}}
	if v.K == 0 {
		v.K, v.N = vault.DefaultK, vault.DefaultN
	}
	if v.Boxes == nil {
		v.Boxes = []vault.Box{}
	}
	for _, f := range s.vault.Files() {
		if f.Account == p.account || p.allows(roleAdmin) {
			c, _ := s.vault.Cap(f.ID)
			v.Files = append(v.Files, VaultFile{FileInfo: f, Cap: c.String()})
			if f.State == vault.StateAtRisk {
				v.AtRisk = append(v.AtRisk, f.ID)
			}
		}
	}
	if p.allows(roleAdmin) {
		v.Backup = s.backupInfo()
		info.Disk = s.diskInfo()
	}
	info.Vault = v
	return info
}

// storageFor returns the storage component and who asks; without the
// component it answers 503 and returns false.
func (h *handler) storageFor(w http.ResponseWriter, r *http.Request) (*storageService, principal, bool) {
	p, _ := who(r)
	if h.cfg.storage == nil || !storageInProfile {
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: errNoStorage})
		return nil, p, false
	}
	return h.cfg.storage, p, true
}

// apiStorage answers GET /api/v1/storage.
func (h *handler) apiStorage(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.storageInfo(r))
}

// apiVault answers POST /api/v1/storage/vault?name=NAME (the body is the
// file) and DELETE /api/v1/storage/vault?id=ID.
func (h *handler) apiVault(w http.ResponseWriter, r *http.Request) {
	s, p, ok := h.storageFor(w, r)
	if !ok || !storageInProfile {
		return
	}
	switch r.Method {
	case http.MethodPost:
		name := path.Base("/" + strings.TrimSpace(r.URL.Query().Get("name")))
		if name == "/" || len(name) > 255 {
			writeJSON(w, http.StatusBadRequest, errorResponse{Error: "name the file: POST /api/v1/storage/vault?name=NAME with the file as body"})
			return
		}
		if r.ContentLength < 0 {
			writeJSON(w, http.StatusLengthRequired, errorResponse{Error: "send the file with its Content-Length"})
			return
		}
		if r.ContentLength > vault.MaxFileSize {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorResponse{Error: fmt.Sprintf("the vault takes files up to %d bytes", int64(vault.MaxFileSize))})
			return
		}
		// The file streams to the holders as it arrives: no deadline but
		// the client's.
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Time{})
		rc.SetWriteDeadline(time.Time{})
		fi, c, err := s.vault.Put(r.Context(), name, p.account, r.Body, r.ContentLength)
		if err != nil {
			code := http.StatusBadGateway
			if errors.Is(err, vault.ErrTooFewBoxes) {
				code = http.StatusServiceUnavailable
			}
			writeJSON(w, code, errorResponse{Error: err.Error() + "; more boxes must offer vault space (cloudboxd --vault-offer)"})
			return
		}
		writeJSON(w, http.StatusCreated, VaultStored{File: fi, Cap: c.String()})
	case http.MethodDelete:
		id := r.URL.Query().Get("id")
		if !h.ownsVaultFile(p, id) {
			writeJSON(w, http.StatusNotFound, errorResponse{Error: "no vault file " + id + " of yours"})
			return
		}
		if err := s.vault.Delete(r.Context(), id); err != nil {
			writeJSON(w, http.StatusInternalServerError, errorResponse{Error: err.Error()})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "POST, DELETE")
		writeJSON(w, http.StatusMethodNotAllowed, errorResponse{Error: "use POST to store a file, DELETE to remove one"})
	}
}

// ownsVaultFile reports whether p may see the key of the box's file id.
func (h *handler) ownsVaultFile(p principal, id string) bool {
	return slices.ContainsFunc(h.cfg.storage.vault.Files(), func(f vault.FileInfo) bool {
		return f.ID == id && (f.Account == p.account || p.allows(roleAdmin))
	})
}

// apiVaultRead answers GET /api/v1/storage/vault/read?cap=CAP (any box's
// file, with its capability) or ?id=ID (this box's file, for its owner
// account): the file's content.
func (h *handler) apiVaultRead(w http.ResponseWriter, r *http.Request) {
	s, p, ok := h.storageFor(w, r)
	if !ok || !storageInProfile {
		return
	}
	var c vault.Cap
	name := ""
	if id := r.URL.Query().Get("id"); id != "" {
		if c, ok = s.vault.Cap(id); !ok || !h.ownsVaultFile(p, id) {
			writeJSON(w, http.StatusNotFound, errorResponse{Error: "no vault file " + id + " of yours; others' files need their capability (?cap=)"})
			return
		}
		for _, f := range s.vault.Files() {
			if f.ID == id {
				name = f.Name
			}
		}
	} else {
		var err error
		if c, err = vault.ParseCap(r.URL.Query().Get("cap")); err != nil {
			writeJSON(w, http.StatusBadRequest, errorResponse{Error: err.Error()})
			return
		}
	}
	f, err := s.vault.Open(r.Context(), c)
	if err != nil {
		code := http.StatusBadGateway
		switch {
		case errors.Is(err, vault.ErrWrongKey):
			code = http.StatusForbidden
		case errors.Is(err, vault.ErrNotFound):
			code = http.StatusNotFound
		}
		writeJSON(w, code, errorResponse{Error: err.Error()})
		return
	}
	defer f.Close()
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Security-Policy", userContentPolicy)
	w.Header().Set("Content-Length", strconv.FormatInt(f.Size, 10))
	if name != "" {
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	}
	if _, err := f.Copy(r.Context(), w); err != nil {
		// The status is sent: the short body tells the client.
		h.cfg.logger.Warn("vault read cut short", "file", c.File, "error", err)
	}
}

// linkRequest is the body of POST /api/v1/storage/links.
type linkRequest struct {
	Path string `json:"path"`
}

// apiLinks answers POST /api/v1/storage/links {"path": P} with a new
// share link, DELETE ?token=T removes one.
func (h *handler) apiLinks(w http.ResponseWriter, r *http.Request) {
	s, p, ok := h.storageFor(w, r)
	if !ok || !storageInProfile {
		return
	}
	if r.Method == http.MethodDelete {
		if err := s.folders.DeleteLink(p.account, r.URL.Query().Get("token")); err != nil {
			writeJSON(w, http.StatusNotFound, errorResponse{Error: err.Error()})
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var req linkRequest
	if !decodeJSONPost(w, r, 4<<10, &req, `{"path": "/photos/cat.jpg"}`) {
		return
	}
	l, err := s.folders.CreateLink(p.account, req.Path)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusCreated, l)
}

// storagePage shows the folders' and the vault's state.
func (h *handler) storagePage(w http.ResponseWriter, r *http.Request) {
	h.renderStorage(w, r, http.StatusOK, "", "")
}

// renderStorage renders the Storage page with an error or a message of
// a form.
func (h *handler) renderStorage(w http.ResponseWriter, r *http.Request, code int, errMsg, done string) {
	d := h.pageFor(r, "Storage", "/storage")
	p, _ := who(r)
	h.render(w, code, h.panel.storage, struct {
		pageData
		Info        StorageInfo
		Admin       bool
		Error, Done string
	}{d, h.storageInfo(r), p.allows(roleAdmin), errMsg, done})
}

// filesPage is the file browser of the account's folder.
func (h *handler) filesPage(w http.ResponseWriter, r *http.Request) {
	s := h.cfg.storage
	if s == nil || !storageInProfile {
		http.Error(w, errNoStorage, http.StatusServiceUnavailable)
		return
	}
	p, _ := who(r)
	dir := path.Clean("/" + r.URL.Query().Get("path"))
	d := h.pageFor(r, "Files", "/storage")
	entries, err := s.folders.List(p.account, dir)
	msg := ""
	if err != nil {
		msg = d.T("This folder cannot be listed: %s", err.Error())
	}
	var crumbs []struct{ Name, Path string }
	acc := ""
	for seg := range strings.SplitSeq(strings.Trim(dir, "/"), "/") {
		if seg != "" {
			acc += "/" + seg
			crumbs = append(crumbs, struct{ Name, Path string }{seg, acc})
		}
	}
	used, _ := s.folders.Usage(p.account)
	h.render(w, http.StatusOK, h.panel.storageFiles, struct {
		pageData
		Dir     string
		Crumbs  []struct{ Name, Path string }
		Entries []storage.Entry
		Error   string
		DAV     string
		Used    string
		Quota   string
	}{d, strings.TrimSuffix(dir, "/"), crumbs, entries, msg, s.folders.Prefix(),
		formatBytes(uint64(used)), quotaText(d, s.folders.Quota())})
}

// quotaText is the quota q (negative: none) for the page d.
func quotaText(d pageData, q int64) string {
	if q < 0 {
		return d.T("no limit")
	}
	return formatBytes(uint64(q))
}

// formatSize is formatBytes for the templates, which pass int64.
func formatSize(n int64) string { return formatBytes(uint64(max(n, 0))) }

// writeStorageMetrics adds the folders' and the vault's metrics.
func (h *handler) writeStorageMetrics(w io.Writer) {
	s := h.cfg.storage
	if s == nil || !storageInProfile {
		return
	}
	fs, st, vs := s.folders.Stats(), s.store.Stats(), s.vault.Stats()
	for _, m := range []struct {
		name, typ, help string
		v               any
	}{
		{"webdav_uploads_total", "counter", "WebDAV uploads completed.", fs.Uploads},
		{"webdav_downloads_total", "counter", "WebDAV and share link downloads.", fs.Downloads},
		{"webdav_received_bytes_total", "counter", "Bytes written by WebDAV uploads.", fs.BytesIn},
		{"webdav_quota_refused_total", "counter", "Uploads refused over a quota.", fs.QuotaRefused},
		{"webdav_path_refused_total", "counter", "Requests refused for path traversal.", fs.PathRefused},
		{"vault_offer_bytes", "gauge", "Vault space this box offers.", st.Offer},
		{"vault_used_bytes", "gauge", "Vault space used by other boxes' shares.", st.Used},
		{"vault_held_shares", "gauge", "Shares held for other boxes.", st.Shares},
		{"vault_refused_total", "counter", "Shares or changes refused (forged, corrupt, no space, not the owner).", st.Refused},
		{"vault_files", "gauge", "This box's files in the vault.", vs.Files},
		{"vault_files_at_risk", "gauge", "This box's vault files with K or fewer live shares.", vs.AtRisk},
		{"vault_repairs_total", "counter", "Vault files repaired onto other boxes.", vs.Repairs},
		{"vault_corrupt_shares_total", "counter", "Shares that did not match their manifest when read.", vs.Corrupt},
	} {
		fmt.Fprintf(w, "# HELP cloudbox_storage_%s %s\n# TYPE cloudbox_storage_%s %s\ncloudbox_storage_%s %v\n", m.name, m.help, m.name, m.typ, m.name, m.v)
	}
}
