package roster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/overlay/membership"
	"github.com/google/go-cmp/cmp"
)

// founderBox is a roster with the root key, served on loopback.
type founderBox struct {
	*fixture
	clk   *clock
	key   [32]byte
	r     *Roster
	store *membership.Store
	srv   *httptest.Server
}

func newFounderBox(t *testing.T, f *fixture, cfg Config) *founderBox {
	t.Helper()
	b := &founderBox{fixture: f, clk: newClock(t0), key: nodeKey(t, 0xa), store: mustStore(t)}
	cfg.Self = f.founder(b.key, t0)
	cfg.RootKey = f.root
	cfg.Store = b.store
	cfg.Now = b.clk.Now
	cfg.SelfEndpoints = func() []netip.AddrPort { return []netip.AddrPort{ep1} }
	b.r = f.newRoster(t, cfg)
	b.srv = httptest.NewServer(b.r.Handler())
	t.Cleanup(b.srv.Close)
	return b
}

// post sends body to path and returns the status, headers and body.
func post(t *testing.T, method, url string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// jsonError returns the message of a JSON error body, failing if it is not
// one.
func jsonError(t *testing.T, h http.Header, b []byte) string {
	t.Helper()
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var v struct {
		Error string `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || v.Error == "" {
		t.Fatalf("body %q is not a JSON error: %v", b, err)
	}
	return v.Error
}

func joinBody(t *testing.T, m *membership.Membership, eps ...netip.AddrPort) []byte {
	t.Helper()
	b, err := (&JoinRequest{Membership: m, Endpoints: eps}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJoinHTTP(t *testing.T) {
	f := newFixture(t)
	a := newFounderBox(t, f, Config{JoinBurst: 1000})
	keyB, keyD := nodeKey(t, 0xb), nodeKey(t, 0xd)
	invB := f.invite("b", t0.Add(24*time.Hour))
	chainB := f.issue(invB, keyB, t0, 0)

	t.Run("join", func(t *testing.T) {
		s, err := Join(t.Context(), http.DefaultClient, []string{a.srv.URL}, chainB, []netip.AddrPort{ep2})
		if err != nil {
			t.Fatal(err)
		}
		want := []Record{
			{Membership: a.r.Self(), Endpoints: []netip.AddrPort{ep1}, Updated: t0},
			{Membership: chainB, Endpoints: []netip.AddrPort{ep2}, Updated: t0},
		}
		if compareKeys(a.key, keyB) > 0 {
			want[0], want[1] = want[1], want[0]
		}
		if diff := cmp.Diff(want, s.Records, cmpOpts); diff != "" {
			t.Errorf("snapshot records (-want +got):\n%s", diff)
		}
		if got := keysOf(a.r); len(got) != 2 {
			t.Errorf("founder knows %d members, want 2", len(got))
		}
		// The redemption and the roster are saved.
		red, err := a.store.LoadRedemptions()
		if err != nil {
			t.Fatal(err)
		}
		if k, ok := red.Lookup(invB.Delegation().InviteID); !ok || k != keyB {
			t.Errorf("stored redemption = %x, %v; want %x", k, ok, keyB)
		}
		if _, err := os.Stat(filepath.Join(a.store.Dir(), RosterFile)); err != nil {
			t.Error(err)
		}
	})
	t.Run("same key again", func(t *testing.T) {
		if _, err := Join(t.Context(), http.DefaultClient, []string{a.srv.URL}, chainB, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("invitation used by another node key", func(t *testing.T) {
		_, err := Join(t.Context(), http.DefaultClient, []string{a.srv.URL}, f.issue(invB, keyD, t0, 0), nil)
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != http.StatusConflict || !errors.Is(err, membership.ErrInviteUsed) {
			t.Fatalf("Join = %v, want a 409 StatusError wrapping ErrInviteUsed", err)
		}
		if !strings.Contains(se.Message, "already used") || !strings.Contains(se.Message, "new invitation") {
			t.Errorf("message %q does not say the invitation was used and what to do", se.Message)
		}
	})
	t.Run("expired invitation", func(t *testing.T) {
		exp := t0.Add(time.Hour)
		chain := f.issue(f.invite("late", exp), nodeKey(t, 0xe), t0, 0)
		a.clk.Advance(2 * time.Hour)
		defer a.clk.Advance(-2 * time.Hour)
		_, err := Join(t.Context(), http.DefaultClient, []string{a.srv.URL}, chain, nil)
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != http.StatusForbidden || !errors.Is(err, ErrRefused) {
			t.Fatalf("Join = %v, want a 403 StatusError wrapping ErrRefused", err)
		}
		if want := exp.Format(time.RFC3339); !strings.Contains(se.Message, want) {
			t.Errorf("message %q does not name the expiry %s", se.Message, want)
		}
	})
	t.Run("revoked invitation", func(t *testing.T) {
		inv := f.invite("revoked", t0.Add(time.Hour))
		if err := a.r.Revoke(membership.RevokeInviteEntry(inv.Delegation().InviteID, "token leaked")); err != nil {
			t.Fatal(err)
		}
		_, err := Join(t.Context(), http.DefaultClient, []string{a.srv.URL}, f.issue(inv, nodeKey(t, 0xf), t0, 0), nil)
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != http.StatusForbidden || !strings.Contains(se.Message, "revoked") {
			t.Fatalf("Join = %v, want a 403 saying revoked", err)
		}
	})
	t.Run("other community", func(t *testing.T) {
		other := otherFixture(t).member("x", nodeKey(t, 0x11), t0, 0)
		status, h, b := post(t, http.MethodPost, a.srv.URL+JoinPath, joinBody(t, other))
		if status != http.StatusForbidden {
			t.Errorf("status %d, want 403", status)
		}
		jsonError(t, h, b)
	})
	t.Run("own node key", func(t *testing.T) {
		status, h, b := post(t, http.MethodPost, a.srv.URL+JoinPath, joinBody(t, f.member("me", a.key, t0, 0)))
		if status != http.StatusConflict {
			t.Errorf("status %d, want 409", status)
		}
		jsonError(t, h, b)
	})
	for _, tc := range malformedJoinRequests(t) {
		t.Run("malformed/"+tc.name, func(t *testing.T) {
			status, h, b := post(t, http.MethodPost, a.srv.URL+JoinPath, tc.b)
			want := http.StatusBadRequest
			if len(tc.b) > MaxJoinRequestSize {
				want = http.StatusRequestEntityTooLarge
			}
			if status != want {
				t.Errorf("status %d, want %d", status, want)
			}
			jsonError(t, h, b)
		})
	}
	t.Run("oversized body", func(t *testing.T) {
		status, h, b := post(t, http.MethodPost, a.srv.URL+JoinPath, make([]byte, 1<<20))
		if status != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d, want 413", status)
		}
		jsonError(t, h, b)
	})
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodGet, JoinPath, "POST"},
		{http.MethodPut, JoinPath, "POST"},
		{http.MethodPost, SnapshotPath, "GET"},
		{http.MethodDelete, SnapshotPath, "GET"},
	} {
		t.Run("method "+tc.method+" "+tc.path, func(t *testing.T) {
			status, h, b := post(t, tc.method, a.srv.URL+tc.path, nil)
			if status != http.StatusMethodNotAllowed || h.Get("Allow") != tc.allow {
				t.Errorf("status %d, Allow %q; want 405, %q", status, h.Get("Allow"), tc.allow)
			}
			jsonError(t, h, b)
		})
	}
	t.Run("unknown path", func(t *testing.T) {
		status, h, b := post(t, http.MethodGet, a.srv.URL+"/overlay/v1/nothing", nil)
		if status != http.StatusNotFound {
			t.Errorf("status %d, want 404", status)
		}
		jsonError(t, h, b)
	})
	t.Run("snapshot", func(t *testing.T) {
		s, err := Fetch(t.Context(), http.DefaultClient, a.srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Records) != 2 || s.Revocations == nil || s.Revocations.Sequence != 1 {
			t.Errorf("snapshot has %d records and revocation list %v, want 2 and sequence 1", len(s.Records), s.Revocations)
		}
	})
	st := a.r.Stats()
	wantRefused := map[Reason]uint64{
		ReasonInviteUsed: 1, ReasonExpired: 1, ReasonRevoked: 1, ReasonWrongCommunity: 1, ReasonSelf: 1,
		ReasonMalformed: uint64(len(malformedJoinRequests(t)) - 1), ReasonTooLarge: 2, ReasonMethod: 2,
	}
	if diff := cmp.Diff(wantRefused, st.JoinsRefused); diff != "" {
		t.Errorf("joins refused (-want +got):\n%s", diff)
	}
	if st.JoinsAccepted != 2 || st.SnapshotsServed != 1 {
		t.Errorf("joins accepted %d, snapshots served %d; want 2, 1", st.JoinsAccepted, st.SnapshotsServed)
	}
}

func TestJoinRateLimit(t *testing.T) {
	f := newFixture(t)
	a := newFounderBox(t, f, Config{JoinBurst: 2, JoinEvery: time.Minute})
	for i, want := range []int{400, 400, 429, 429} {
		status, h, b := post(t, http.MethodPost, a.srv.URL+JoinPath, []byte("x"))
		if status != want {
			t.Fatalf("request %d: status %d, want %d", i, status, want)
		}
		msg := jsonError(t, h, b)
		if status == http.StatusTooManyRequests && (h.Get("Retry-After") != "60" || !strings.Contains(msg, "try again")) {
			t.Errorf("request %d: Retry-After %q, message %q", i, h.Get("Retry-After"), msg)
		}
	}
	a.clk.Advance(time.Minute)
	if status, _, _ := post(t, http.MethodPost, a.srv.URL+JoinPath, []byte("x")); status != http.StatusBadRequest {
		t.Errorf("after a minute: status %d, want 400", status)
	}
	// The snapshot is not rate-limited.
	if _, err := Fetch(t.Context(), http.DefaultClient, a.srv.URL); err != nil {
		t.Error(err)
	}
	// Join turns 429 into ErrRateLimited.
	_, err := Join(t.Context(), http.DefaultClient, []string{a.srv.URL}, f.member("b", nodeKey(t, 0xb), t0, 0), nil)
	if !errors.Is(err, ErrRateLimited) {
		t.Errorf("Join = %v, want ErrRateLimited", err)
	}
}

func TestJoinHandlerServesOnlyJoin(t *testing.T) {
	f := newFixture(t)
	a := newFounderBox(t, f, Config{})
	srv := httptest.NewServer(a.r.JoinHandler())
	defer srv.Close()
	if status, _, _ := post(t, http.MethodGet, srv.URL+SnapshotPath, nil); status != http.StatusNotFound {
		t.Errorf("GET snapshot on the join handler: status %d, want 404", status)
	}
	if _, err := Join(t.Context(), http.DefaultClient, []string{srv.URL}, f.member("b", nodeKey(t, 0xb), t0, 0), nil); err != nil {
		t.Error(err)
	}
}

func TestJoinBootstraps(t *testing.T) {
	f := newFixture(t)
	a := newFounderBox(t, f, Config{JoinBurst: 1000})
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // nothing listens there any more
	release := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hanging.Close()
	defer close(release) // before Close, which waits for the handlers
	var conflicted int
	conflict := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conflicted++
		writeError(w, http.StatusConflict, "invitation already used")
	}))
	defer conflict.Close()
	var reached int
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached++
		a.r.Handler().ServeHTTP(w, r)
	}))
	defer counting.Close()
	client := &http.Client{Timeout: 500 * time.Millisecond}

	tests := []struct {
		name      string
		bootstrap []string
		wantErr   error
		wantIn    []string // substrings of the error
		wantReach int      // requests that reached the counting server
	}{
		{"first down, second up", []string{closed.URL, counting.URL}, nil, nil, 1},
		{"first hangs, second up", []string{hanging.URL, counting.URL}, nil, nil, 1},
		{"all down", []string{closed.URL, hanging.URL}, nil, []string{"bootstrap " + closed.URL, "bootstrap " + hanging.URL, "2 of 2"}, 0},
		{"conflict stops", []string{conflict.URL, counting.URL}, membership.ErrInviteUsed, []string{"HTTP 409", "already used"}, 0},
		{"bad URL", []string{"192.0.2.1:51820"}, nil, []string{"want http://"}, 0},
		{"none", nil, ErrNoBootstrap, nil, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reached = 0
			m := f.member("b", nodeKey(t, byte(0x20+i)), t0, 0)
			_, err := Join(t.Context(), client, tt.bootstrap, m, nil)
			switch {
			case tt.wantErr == nil && tt.wantIn == nil && err != nil:
				t.Fatalf("Join = %v, want success", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("Join = %v, want %v", err, tt.wantErr)
			}
			for _, s := range tt.wantIn {
				if err == nil || !strings.Contains(err.Error(), s) {
					t.Errorf("Join error %v does not contain %q", err, s)
				}
			}
			if reached != tt.wantReach {
				t.Errorf("counting server reached %d times, want %d", reached, tt.wantReach)
			}
		})
	}
	if conflicted != 1 {
		t.Errorf("conflict server reached %d times, want 1", conflicted)
	}
}

func TestJoinCanceled(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Join(ctx, http.DefaultClient, []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}, f.member("b", nodeKey(t, 0xb), t0, 0), nil)
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "127.0.0.1:2") {
		t.Errorf("Join = %v, want context.Canceled after the first bootstrap", err)
	}
}
