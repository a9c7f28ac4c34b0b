//go:build router

package appliance

import (
	"bytes"
	"html/template"
)

// routerPage is every panel page of the router profile. Executing
// templates calls methods by name through reflection, which makes the Go
// linker keep every exported method of every type in the binary (about
// 2 MB on mipsle); small routers cannot afford that, so their cloudboxd
// serves the API and metrics only.
const routerPage = `<!doctype html>
<meta charset="utf-8">
<title>cloudbox</title>
<h1>cloudbox on a router</h1>
<p>This box runs the router profile of cloudboxd, which has no web panel.
Its API answers under <a href="/api/v1/status">/api/v1/status</a>; the
<code>cloudbox</code> tool on a computer lists and publishes services through
it (<code>cloudbox services --box-url http://THIS-ROUTER:8080</code>).</p>
`

// executePage writes routerPage whatever the page.
func executePage(b *bytes.Buffer, _ *template.Template, _ any) error {
	b.WriteString(routerPage)
	return nil
}
