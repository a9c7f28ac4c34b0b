//go:build router

package appliance

import (
	"bytes"
	"embed"
	"html"
	"html/template"
	"reflect"
)

// The router profile has no template panel. Executing templates calls
// methods by name through reflection, which makes the Go linker keep every
// exported method of every type in the binary (about 1.7 MB on mipsle);
// small routers cannot afford that. Their cloudboxd writes the pages that
// a box cannot do without, the setup wizard and the login, as plain forms
// from Go, and a short page with a pointer to the API for everything
// else. Members use the API (`cloudbox services --box-url`) with a
// session from /login or an API token.

// The router profile's pages have no style sheet or scripts, and are in
// English: staticFS and catalogFS are empty (the translations are 50 KB of
// the binary and more of its heap).
var staticFS, catalogFS embed.FS

// newPanel returns a panel without templates: executePage writes every
// page.
func newPanel(func(string) (string, error)) (*panel, error) {
	return &panel{}, nil
}

// executePage writes the router profile's page for data (t is nil).
func executePage(b *bytes.Buffer, _ *template.Template, data any) error {
	var pd pageData
	if p, ok := data.(interface{ page() pageData }); ok {
		pd = p.page()
	}
	title, csrf := pd.Title, pd.CSRF
	b.WriteString("<!doctype html>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width\">\n<title>")
	b.WriteString(html.EscapeString(title))
	b.WriteString(" · cloudbox</title>\n")
	if len(pd.Nav) > 0 {
		b.WriteString("<nav>")
		for i, it := range pd.Nav {
			if i > 0 {
				b.WriteString(" · ")
			}
			b.WriteString("<a href=\"" + it.Path + "\">" + html.EscapeString(it.Label) + "</a>")
		}
		b.WriteString("</nav>\n")
	}
	b.WriteString("<h1>")
	b.WriteString(html.EscapeString(title))
	b.WriteString("</h1>\n")
	switch d := data.(type) {
	case loginData:
		routerError(b, d.Error)
		routerForm(b, "/login", "", []routerField{{"hidden", "next", d.Next}, {"text", "username", d.Username}, {"password", "password", ""}}, "Log in")
	case wizardData:
		routerError(b, d.Error)
		switch d.Step {
		case "code":
			b.WriteString("<p>Enter the setup code that cloudboxd logged when it started (logread -e cloudbox).</p>\n")
			routerForm(b, "/setup", "", []routerField{{"text", "code", ""}}, "Continue")
		case "account":
			routerForm(b, "/setup/account", csrf, []routerField{{"text", "username", d.Username}, {"password", "password", ""}, {"password", "password2", ""}}, "Create the administrator")
		case "box":
			routerForm(b, "/setup/box", csrf, []routerField{{"text", "name", d.BoxName}, {"text", "location", d.Location}}, "Continue")
		case "community":
			routerForm(b, "/setup/community", csrf, []routerField{{"hidden", "action", "create"}, {"text", "community", d.Community}, {"text", "range", d.Range}}, "Create a community")
			routerForm(b, "/setup/community", csrf, []routerField{{"hidden", "action", "join"}, {"text", "token", d.Token}}, "Join with an invitation")
		default:
			routerForm(b, "/setup/community", csrf, []routerField{{"hidden", "action", "finish"}}, "Finish the setup")
		}
	default:
		v := reflect.ValueOf(data)
		if v.Kind() == reflect.Struct {
			for _, name := range []string{"Message", "Error", "InviteError", "JoinError"} {
				if f := v.FieldByName(name); f.IsValid() && f.Kind() == reflect.String && f.String() != "" {
					b.WriteString("<p>" + html.EscapeString(f.String()) + "</p>\n")
				}
			}
			// The updates page: the running version and the last
			// install (the rest is in GET /api/v1/update).
			if f := v.FieldByName("Update"); f.IsValid() {
				if u, ok := f.Interface().(UpdateInfo); ok {
					routerUpdates(b, u)
				}
			}
			// The community page: a router's administrators invite
			// boxes here, so it keeps its two forms.
			if f := v.FieldByName("Invitation"); f.IsValid() && f.Kind() == reflect.String {
				if f.String() != "" {
					b.WriteString("<p>The invitation, for one box (it expires in three days):</p>\n<pre>" + html.EscapeString(f.String()) + "</pre>\n")
				}
				routerForm(b, "/community/invite", csrf, []routerField{{"text", "name", ""}}, "Invite a box")
				routerForm(b, "/community/join", csrf, []routerField{{"text", "token", ""}}, "Join another community")
			}
		}
		b.WriteString(routerPage)
	}
	return nil
}

// routerPage is the rest of every other page of the router profile.
const routerPage = `<p>This box runs the router profile of cloudboxd, which has no web panel.
Its API answers under <a href="/api/v1/status">/api/v1/status</a>; the
<code>cloudbox</code> tool on a computer lists and publishes services through
it (<code>cloudbox services --box-url http://THIS-ROUTER:8080</code>, with
an API token in $CLOUDBOX_TOKEN). <a href="/login">Log in</a>.</p>
`

type routerField struct{ typ, name, value string }

func routerError(b *bytes.Buffer, msg string) {
	if msg != "" {
		b.WriteString("<p role=\"alert\"><strong>" + html.EscapeString(msg) + "</strong></p>\n")
	}
}

// routerForm writes a form posting fields (and the CSRF token, if any) to
// action.
func routerForm(b *bytes.Buffer, action, csrf string, fields []routerField, submit string) {
	b.WriteString("<form method=\"post\" action=\"" + action + "\">\n")
	if csrf != "" {
		b.WriteString("<input type=\"hidden\" name=\"csrf\" value=\"" + html.EscapeString(csrf) + "\">\n")
	}
	for _, f := range fields {
		in := "<input type=\"" + f.typ + "\" name=\"" + f.name + "\" id=\"" + f.name + "\" value=\"" + html.EscapeString(f.value) + "\">"
		if f.typ == "hidden" {
			b.WriteString(in + "\n")
			continue
		}
		b.WriteString("<p><label for=\"" + f.name + "\">" + f.name + "</label><br>" + in + "</p>\n")
	}
	b.WriteString("<p><button type=\"submit\">" + html.EscapeString(submit) + "</button></p>\n</form>\n")
}

// routerUpdates writes the router's update state.
func routerUpdates(b *bytes.Buffer, u UpdateInfo) {
	b.WriteString("<p>Running version " + html.EscapeString(u.Running) + " (" + html.EscapeString(u.Board) + ").")
	if u.Problem != "" {
		b.WriteString(" " + html.EscapeString(u.Problem))
	}
	b.WriteString("</p>\n")
	if in := u.Install; in != nil {
		b.WriteString("<p>Last install: version " + html.EscapeString(in.Version) + ", " + html.EscapeString(in.Phase))
		if in.Reason != "" {
			b.WriteString(": " + html.EscapeString(in.Reason))
		}
		b.WriteString("</p>\n")
	}
}
