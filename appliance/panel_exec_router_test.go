//go:build router

package appliance

import (
	"bytes"
	"net/http"
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
		{"updates", struct {
			pageData
			Update UpdateInfo
		}{pageData{Title: "Updates", Nav: navItems}, UpdateInfo{Running: "1.0.0", Board: "openwrt-mipsle",
			Install: &InstallStatus{Version: "2.0.0", Phase: phaseRolledBack, Reason: "exited <at once>"}}},
			[]string{`<a href="/updates">Updates</a>`, "Running version 1.0.0 (openwrt-mipsle)", "version 2.0.0, rolled-back: exited &lt;at once&gt;"},
			[]string{`href="/streams"`, `href="/calls"`, `href="/storage"`}},
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

// TestRouterNav: the navigation lists the pages a router has (Updates now)
// and none of what its profile leaves out, which would answer 404.
func TestRouterNav(t *testing.T) {
	h, _ := newTestHandler(t, "router")
	paths := map[string]bool{}
	for _, it := range navItems {
		paths[it.Path] = true
		if it.Soon {
			continue
		}
		if resp := do(t, h, "GET", it.Path); resp.StatusCode == http.StatusNotFound {
			t.Errorf("nav item %s answers 404 on a router", it.Path)
		}
	}
	if resp := do(t, h, "GET", "/streams"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /streams on a router = %d, want 404 (so the nav must not list it)", resp.StatusCode)
	}
	for _, p := range []string{"/streams", "/calls", "/storage"} {
		if paths[p] {
			t.Errorf("nav lists %s, which the router profile leaves out", p)
		}
	}
	for _, p := range []string{"/", "/community", "/services", "/gateway", "/updates", "/settings"} {
		if !paths[p] {
			t.Errorf("nav lacks %s", p)
		}
	}
}
