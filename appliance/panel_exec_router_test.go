//go:build router

package appliance

import (
	"bytes"
	"strings"
	"testing"
)

// TestRouterPages checks the router profile's plain pages: the forms a
// router cannot do without, their CSRF token, and escaping.
func TestRouterPages(t *testing.T) {
	pd := pageData{Title: "T<1>", CSRF: "tok\"en"}
	for _, tc := range []struct {
		name    string
		data    any
		want    []string
		notWant []string
	}{
		{"login", loginData{pageData: pd, Username: "<alice>", Error: "wrong password", Next: "/x"},
			[]string{`<title>T&lt;1&gt; · cloudbox</title>`, `action="/login"`, `value="&lt;alice&gt;"`, `role="alert"`, "wrong password", `name="next" id="next" value="/x"`},
			[]string{"<alice>", "csrf"}},
		{"wizard code", wizardData{pageData: pd, Step: "code"}, []string{`action="/setup"`, `name="code"`}, nil},
		{"wizard account", wizardData{pageData: pd, Step: "account", Username: "admin"},
			[]string{`action="/setup/account"`, `name="username" id="username" value="admin"`, `name="password"`, `name="password2"`}, nil},
		{"wizard box", wizardData{pageData: pd, Step: "box", BoxName: "r1", Location: "roof"},
			[]string{`action="/setup/box"`, `name="name" id="name" value="r1"`, `name="location" id="location" value="roof"`}, nil},
		{"wizard community", wizardData{pageData: pd, Step: "community", Community: "guifi"},
			[]string{`action="/setup/community"`, `value="create"`, `value="join"`, `value="guifi"`, `name="csrf" value="tok&#34;en"`}, nil},
		{"community with invitation", struct {
			pageData
			communityForm
		}{pd, communityForm{Invitation: "cloudbox-invite:AB<C>"}},
			[]string{"cloudbox-invite:AB&lt;C&gt;", `action="/community/invite"`, `action="/community/join"`, `name="csrf" value="tok&#34;en"`},
			[]string{"AB<C>"}},
		{"community error", struct {
			pageData
			communityForm
		}{pd, communityForm{InviteError: "no <addresses> left"}},
			[]string{"no &lt;addresses&gt; left", `action="/community/invite"`}, []string{"The invitation"}},
		{"other page", struct {
			pageData
			Message string
		}{pd, "saved"}, []string{"saved", "router profile", "/api/v1/status"}, []string{"<form"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := executePage(&b, nil, tc.data); err != nil {
				t.Fatal(err)
			}
			got := b.String()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("page lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(got, w) {
					t.Errorf("page has %q:\n%s", w, got)
				}
			}
		})
	}
}
