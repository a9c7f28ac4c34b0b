package appliance

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"maps"
	"mime"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"
)

// navItem is an entry of the panel's navigation bar.
type navItem struct {
	Path  string
	Label string
	// Soon marks a placeholder page for a later capability.
	Soon bool
	// Blurb says what the page will offer.
	Blurb string
}

// navItems are the pages of the navigation bar, less those the build's
// profile leaves out (profileOmits).
var navItems = slices.DeleteFunc([]navItem{
	{Path: "/", Label: "Overview"},
	{Path: "/community", Label: "Community"},
	{Path: "/services", Label: "Services"},
	{Path: "/streams", Label: "Streams"},
	{Path: "/calls", Label: "Calls"},
	{Path: "/gateway", Label: "Gateway"},
	{Path: "/storage", Label: "Storage"},
	{Path: "/updates", Label: "Updates"},
	{Path: "/settings", Label: "Settings"},
	{Path: "/accounts", Label: "Accounts"},
	{Path: "/logs", Label: "Logs"},
}, func(it navItem) bool { return slices.Contains(profileOmits, it.Path) })

// panel renders the server-side HTML pages.
type panel struct {
	dashboard *template.Template
	community *template.Template
	services  *template.Template
	soon      *template.Template
	notFound  *template.Template
	login     *template.Template
	message   *template.Template
	setup     *template.Template
	progress  *template.Template
	accounts  *template.Template
	gateway   *template.Template
	// certificate is the HTTPS page (https.go).
	certificate *template.Template
	// settings and logs: settings.go, logs.go.
	settings, logs *template.Template
	updates        *template.Template
	// storage and storageFiles are the storage pages.
	storage, storageFiles *template.Template
	streams               *template.Template
	calls, room           *template.Template
}

// pageData is what every page's layout needs.
type pageData struct {
	Title  string
	Active string // Path of the current nav item, "" for none
	// Nav is nil for people who are not logged in, and in the wizard.
	Nav      []navItem
	NodeName string
	Version  string
	Board    string
	// User is the account logged in, "" for none; Admin if it is one.
	User  string
	Admin bool
	// CSRF is the session's token that every form carries.
	CSRF string
	// Refresh makes the page reload itself every few seconds.
	Refresh bool
	// Insecure is set for a page sent over plain HTTP while the box
	// serves HTTPS: the layout then points to the certificate page.
	Insecure bool
	// Lang is the language of the page (i18n.go), Languages those of
	// the selector, Here the page's path for the selector to return to.
	Lang      string
	Languages []panelLanguage
	Here      string
}

// page returns the layout's data; every page's data embeds pageData, so
// they all have it (the router profile's pages use it).
func (p pageData) page() pageData { return p }

// pageFor returns the layout's data for a page answering r.
func (h *handler) pageFor(r *http.Request, title, active string) pageData {
	d := pageData{
		Title:     title,
		Active:    active,
		NodeName:  h.boxName(),
		Version:   h.cfg.version,
		Board:     h.cfg.board,
		Insecure:  r.TLS == nil && h.cfg.https.enabled(),
		Lang:      requestLanguage(r),
		Languages: panelLanguages,
		Here:      r.URL.RequestURI(),
	}
	if p, ok := who(r); ok {
		d.User, d.Admin = p.account, p.role == roleAdmin
		if p.session != nil {
			d.CSRF = p.session.csrf
		}
		if !p.wizard {
			d.Nav = navItems
		}
	}
	return d
}

// boxName is the name the wizard gave the box, else the node's name.
func (h *handler) boxName() string {
	if b := h.cfg.auth.accounts.box(); b.Name != "" {
		return b.Name
	}
	return h.cfg.node.Name
}

type namedStatus struct {
	Name string
	ComponentStatus
}

func (h *handler) dashboard(w http.ResponseWriter, r *http.Request) {
	s := h.snapshot(r)
	var comps []namedStatus
	for _, name := range slices.Sorted(maps.Keys(s.Components)) {
		comps = append(comps, namedStatus{name, s.Components[name]})
	}
	root := cmp.Or(h.cfg.sysRoot, "/")
	si := readSysInfo(root, h.cfg.stateDir)
	v := h.overlayView()
	health := healthView{Sys: si, Running: v.Running, Members: len(v.Members), Peers: max(len(v.Members)-1, 0), Community: v.Community}
	if si.HasMem {
		health.MemUsed = percent(si.MemTotal-si.MemAvailable, si.MemTotal)
		health.MemTotal = formatBytes(si.MemTotal)
	}
	if si.HasDisk {
		health.DiskFree, health.DiskTotal = formatBytes(si.DiskFree), formatBytes(si.DiskTotal)
		health.DiskUsed = percent(si.DiskTotal-si.DiskFree, si.DiskTotal)
	}
	if si.HasUptime {
		health.BootUptime = formatUptime(si.BootUptime)
	}
	h.render(w, http.StatusOK, h.panel.dashboard, struct {
		pageData
		Status     statusResponse
		Uptime     string
		Created    time.Time
		Components []namedStatus
		Health     healthView
		Location   string
	}{
		pageData:   h.pageFor(r, "Overview", "/"),
		Status:     s,
		Uptime:     formatUptime(time.Duration(s.UptimeS) * time.Second),
		Created:    h.cfg.node.Created,
		Components: comps,
		Health:     health,
		Location:   h.cfg.auth.accounts.box().Location,
	})
}

// healthView is the dashboard's health section.
type healthView struct {
	Sys                           sysInfo
	MemUsed, MemTotal             string
	DiskFree, DiskTotal, DiskUsed string
	BootUptime                    string
	Running                       bool
	Members, Peers                int
	Community                     string
}

func (h *handler) soon(item navItem) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h.render(w, http.StatusOK, h.panel.soon, struct {
			pageData
			Item navItem
		}{h.pageFor(r, item.Label, item.Path), item})
	}
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.render(w, http.StatusNotFound, h.panel.notFound, struct {
		pageData
		Path string
	}{h.pageFor(r, "Not found", ""), r.URL.Path})
}

// render executes t into a buffer first, so that a template error becomes a
// clean 500 instead of half a page.
func (h *handler) render(w http.ResponseWriter, code int, t *template.Template, data any) {
	var b bytes.Buffer
	if err := executePage(&b, t, data); err != nil {
		h.cfg.logger.Error("rendering page failed", "template", t.Name(), "error", err)
		http.Error(w, "the page could not be rendered; the error is in the cloudboxd log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// formatUptime renders d with its two largest units, e.g. "3d 4h", "5m 6s".
func formatUptime(d time.Duration) string {
	s := int64(d / time.Second)
	days, hours, mins, secs := s/86400, s/3600%24, s/60%60, s%60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh %dm", hours, mins)
	case mins > 0:
		return fmt.Sprintf("%dm %ds", mins, secs)
	}
	return fmt.Sprintf("%ds", secs)
}

// staticFile is an embedded asset with its content hash.
type staticFile struct {
	content     []byte
	hash        string // first 8 bytes of SHA-256, hex
	contentType string
}

func loadStatic() (map[string]staticFile, error) {
	files := make(map[string]staticFile)
	if !panelInProfile {
		return files, nil
	}
	err := fs.WalkDir(staticFS, "web/static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = http.DetectContentType(b)
		}
		files[strings.TrimPrefix(p, "web/static/")] = staticFile{b, hex.EncodeToString(sum[:8]), ctype}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading static files: %w", err)
	}
	return files, nil
}

// staticURL returns the URL of the asset name with its content hash, which
// lets browsers cache it until the next update changes it.
func (h *handler) staticURL(name string) (string, error) {
	f, ok := h.static[name]
	if !ok {
		return "", fmt.Errorf("no static file %q", name)
	}
	return "/static/" + name + "?h=" + f.hash, nil
}

// serveStatic serves an embedded asset. A request carrying the current hash
// may be cached for a year; any other must be revalidated with the ETag.
func (h *handler) serveStatic(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/static/")
	f, ok := h.static[name]
	if !ok {
		h.notFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", f.contentType)
	hd.Set("ETag", `"`+f.hash+`"`)
	if r.URL.Query().Get("h") == f.hash {
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hd.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.content))
}
