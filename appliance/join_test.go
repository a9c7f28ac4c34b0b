package appliance

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func post(t *testing.T, h http.Handler, target, contentType, payload string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(payload))
	req.Header.Set("Content-Type", contentType)
	setHeaders(req, hdr)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestOverlayJoinAPI(t *testing.T) {
	notMember := &fakeOverlay{v: overlayView{State: "not a member", NotMember: true}}
	for _, tc := range []struct {
		name        string
		src         overlaySource
		contentType string
		body        string
		wantCode    int
		wantBody    string
	}{
		{"accepted", notMember, "application/json", `{"token": "cloudbox-invite:abc"}`, http.StatusAccepted, `"joining":"testnet"`},
		{"empty token", notMember, "application/json", `{"token": " "}`, http.StatusBadRequest, "join token: empty"},
		{"unknown field", notMember, "application/json", `{"tokn": "x"}`, http.StatusBadRequest, `want {\"token\"`},
		{"form body", notMember, "application/x-www-form-urlencoded", `token=x`, http.StatusUnsupportedMediaType, "application/json"},
		{"too big", notMember, "application/json", `{"token": "` + strings.Repeat("a", maxJoinRequest) + `"}`, http.StatusRequestEntityTooLarge, "over"},
		{"member already", &fakeOverlay{joinErr: errAlreadyMember}, "application/json", `{"token": "x"}`, http.StatusConflict, "already a member"},
		{"bad token", &fakeOverlay{joinErr: errors.New("join token: parsing invitation: malformed")}, "application/json", `{"token": "x"}`, http.StatusBadRequest, "malformed"},
		{"no tun", &fakeOverlay{joinErr: errors.New("no TUN device")}, "application/json", `{"token": "x"}`, http.StatusInternalServerError, "TUN"},
		{"no overlay", nil, "application/json", `{"token": "x"}`, http.StatusServiceUnavailable, "disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newOverlayHandler(t, tc.src)
			resp := post(t, h, "/api/v1/overlay/join", tc.contentType, tc.body)
			if b := body(t, resp); resp.StatusCode != tc.wantCode || !strings.Contains(b, tc.wantBody) {
				t.Errorf("POST = %d %s, want %d containing %s", resp.StatusCode, b, tc.wantCode, tc.wantBody)
			}
		})
	}
	if len(notMember.joined) != 1 || notMember.joined[0] != "cloudbox-invite:abc" {
		t.Errorf("tokens handed to the overlay: %q", notMember.joined)
	}
	h := newOverlayHandler(t, notMember)
	if resp := do(t, h, "GET", "/api/v1/overlay/join"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /api/v1/overlay/join = %d, want 405", resp.StatusCode)
	}
}

func TestCommunityJoinForm(t *testing.T) {
	src := &fakeOverlay{v: overlayView{State: "not a member", NotMember: true}}
	h := newOverlayHandler(t, src)

	page := body(t, do(t, h, "GET", "/community"))
	if !strings.Contains(page, `<form method="post" action="/community/join"`) || !strings.Contains(page, `name="token"`) {
		t.Fatalf("community page of a non-member has no join form:\n%s", page)
	}

	form := url.Values{"token": {"cloudbox-invite:xyz"}}.Encode()
	resp := post(t, h, "/community/join", "application/x-www-form-urlencoded", form, "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/community" {
		t.Errorf("form POST = %d Location %q, want 303 to /community", resp.StatusCode, resp.Header.Get("Location"))
	}
	if len(src.joined) != 1 || src.joined[0] != "cloudbox-invite:xyz" {
		t.Errorf("tokens handed to the overlay: %q", src.joined)
	}

	// A form on another site cannot make the box join.
	resp = post(t, h, "/community/join", "application/x-www-form-urlencoded", form, "Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != http.StatusForbidden || len(src.joined) != 1 {
		t.Errorf("cross-site form POST = %d (joins %d), want 403 and no join", resp.StatusCode, len(src.joined))
	}

	// An error shows the page again, with the error and the token.
	bad := &fakeOverlay{v: overlayView{State: "not a member", NotMember: true},
		joinErr: errors.New("join token: parsing invitation: malformed: short")}
	resp = post(t, newOverlayHandler(t, bad), "/community/join", "application/x-www-form-urlencoded",
		url.Values{"token": {"cloudbox-invite:<b>"}}.Encode(), "Sec-Fetch-Site", "same-origin")
	b := body(t, resp)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(b, "malformed: short") || !strings.Contains(b, "cloudbox-invite:&lt;b&gt;") {
		t.Errorf("failed form POST = %d, want 400 with the error and the escaped token:\n%s", resp.StatusCode, b)
	}
}
