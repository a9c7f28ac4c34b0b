//go:build !router

package appliance

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/appliance/state"
)

// TestFactoryResetForm: the Settings page's factory reset needs the word
// and the administrator's password; then it marks the state and asks for a
// restart, and nothing else happens before it.
func TestFactoryResetForm(t *testing.T) {
	h, b, restarts := settingsAdmin(t)
	tok := b.csrf("/settings")
	marker := filepath.Join(h.cfg.stateDir, resetMarker)

	for _, c := range []struct {
		name    string
		form    url.Values
		code    int
		field   string
		message string
	}{
		{"no confirmation", url.Values{"csrf": {tok}, "password": {"correct horse battery"}}, http.StatusBadRequest, "reset-confirm", "to confirm"},
		{"wrong word", url.Values{"csrf": {tok}, "password": {"correct horse battery"}, "confirm": {"yes"}}, http.StatusBadRequest, "reset-confirm", "to confirm"},
		{"wrong password", url.Values{"csrf": {tok}, "password": {"wrong horse battery"}, "confirm": {"reset"}}, http.StatusUnauthorized, "reset-password", "password is wrong"},
		{"no CSRF token", url.Values{"password": {"correct horse battery"}, "confirm": {"reset"}}, http.StatusForbidden, "", ""},
	} {
		resp, body := b.do("POST", "/settings/reset", c.form)
		wantCode(t, c.name, resp, body, c.code)
		if c.field != "" && (!strings.Contains(body, `id="`+c.field+`" name=`) || !strings.Contains(body, `aria-invalid="true" aria-describedby="reset-error"`) || !strings.Contains(body, c.message)) {
			t.Errorf("%s: the form does not mark %s with %q", c.name, c.field, c.message)
		}
		if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) || *restarts != 0 {
			t.Fatalf("%s: marker %v, %d restarts; want neither", c.name, err, *restarts)
		}
	}

	resp, body := b.do("POST", "/settings/reset", url.Values{"csrf": {tok}, "password": {"correct horse battery"}, "confirm": {" Reset "}})
	wantCode(t, "factory reset", resp, body, http.StatusOK)
	if _, err := os.Stat(marker); err != nil || *restarts != 1 {
		t.Errorf("after the reset: marker %v, %d restarts; want the marker and 1", err, *restarts)
	}
}

// TestFactoryResetErases: a box whose state is marked starts as a new box
// (another node ID, the wizard again), and an erase cut short by a power
// cut is finished at the next start.
func TestFactoryResetErases(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "box")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)

	u, wait := runBox(t, ctx, dir, "box")
	var before statusResponse
	getJSON(t, client, u+"/api/v1/status", "", &before)
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "extra"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := requestFactoryReset(dir); err != nil {
		t.Fatal(err)
	}

	// A power cut after the identity went: the rest goes at the next start.
	if err := os.Remove(filepath.Join(dir, state.FileName)); err != nil {
		t.Fatal(err)
	}
	ok, err := applyFactoryReset(dir)
	if err != nil || !ok {
		t.Fatalf("applyFactoryReset = %v %v", ok, err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left after the erase: %v", left)
	}
	if ok, err := applyFactoryReset(dir); ok || err != nil {
		t.Errorf("second applyFactoryReset = %v %v, want nothing to do", ok, err)
	}

	// Through Run, with the marker set again on a used state.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	u, wait = runBox(t, ctx, dir, "box")
	getJSON(t, client, u+"/api/v1/status", "", &before)
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(filepath.Join(dir, state.FileName))
	if err := requestFactoryReset(dir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	u, wait = runBox(t, ctx, dir, "box")
	defer func() {
		cancel()
		if err := wait(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var after statusResponse
	getJSON(t, client, u+"/api/v1/status", "", &after)
	now, _ := os.ReadFile(filepath.Join(dir, state.FileName))
	if after.NodeID == "" || after.NodeID == before.NodeID || string(now) == string(first) {
		t.Errorf("node after the reset %q, before %q: want a new identity", after.NodeID, before.NodeID)
	}
	if _, err := os.Stat(filepath.Join(dir, resetMarker)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the marker remains: %v", err)
	}
	resp, err := client.Get(u + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/setup" {
		t.Errorf("GET / after the reset ended at %s, want the wizard (/setup)", resp.Request.URL.Path)
	}
}
