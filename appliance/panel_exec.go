//go:build !router

package appliance

import (
	"bytes"
	"html/template"
)

// executePage renders a panel page. The router profile replaces it (see
// panel_exec_router.go).
func executePage(b *bytes.Buffer, t *template.Template, data any) error {
	return t.ExecuteTemplate(b, "layout.html", data)
}
