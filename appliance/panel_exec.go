//go:build !router

package appliance

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
)

//go:embed web/templates/*.html
var templateFS embed.FS

// staticFS holds the panel's style sheet, scripts and icon.
//
//go:embed web/static
var staticFS embed.FS

// catalogFS holds the panel's translations (i18n.go).
//
//go:embed web/i18n/*.json
var catalogFS embed.FS

func newPanel(staticURL func(string) (string, error)) (*panel, error) {
	base, err := template.New("layout.html").
		Funcs(template.FuncMap{"static": staticURL, "bytes": formatSize}).
		ParseFS(templateFS, "web/templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("parsing panel layout: %w", err)
	}
	page := func(name string) (*template.Template, error) {
		t, err := base.Clone()
		if err == nil {
			t, err = t.ParseFS(templateFS, "web/templates/"+name)
		}
		if err != nil {
			return nil, fmt.Errorf("parsing panel page %s: %w", name, err)
		}
		return t, nil
	}
	var p panel
	if p.dashboard, err = page("dashboard.html"); err != nil {
		return nil, err
	}
	if p.community, err = page("community.html"); err != nil {
		return nil, err
	}
	if p.services, err = page("services.html"); err != nil {
		return nil, err
	}
	if p.soon, err = page("soon.html"); err != nil {
		return nil, err
	}
	for _, t := range []struct {
		dst  **template.Template
		name string
	}{
		{&p.notFound, "notfound.html"}, {&p.login, "login.html"}, {&p.message, "message.html"},
		{&p.setup, "setup.html"}, {&p.progress, "progress.html"}, {&p.accounts, "accounts.html"},
		{&p.gateway, "gateway.html"}, {&p.certificate, "certificate.html"},
		{&p.settings, "settings.html"}, {&p.logs, "logs.html"},
		{&p.updates, "updates.html"}, {&p.storage, "storage.html"}, {&p.storageFiles, "storagefiles.html"},
		{&p.streams, "streams.html"}, {&p.calls, "calls.html"}, {&p.room, "room.html"},
	} {
		if *t.dst, err = page(t.name); err != nil {
			return nil, err
		}
	}
	return &p, nil
}

// executePage renders a panel page. The router profile replaces it (see
// panel_exec_router.go).
func executePage(b *bytes.Buffer, t *template.Template, data any) error {
	return t.ExecuteTemplate(b, "layout.html", data)
}
