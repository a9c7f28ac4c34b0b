//go:build !router

package appliance

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/appliance/state"
	"github.com/cloudbox/cloudbox/internal/browsertest"
)

const backupPassword = "a long backup password"

func init() {
	// The cheapest parameters a backup may have: the tests derive many keys.
	backupKDF.time, backupKDF.memory, backupKDF.threads = 1, minBackupArgonMemory, 1
}

func TestBackupFormat(t *testing.T) {
	p := backupPayload{Version: 1, NodeID: "n1", Files: map[string][]byte{
		state.FileName: []byte(`{"x":1}`), "panel/accounts.json": []byte(`{}`), "tls/ca.pem": []byte("pem"),
	}}
	b, err := sealBackup(p, backupPassword)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := parseBackupHeader(b)
	if err != nil || h.time != backupKDF.time || h.memory != backupKDF.memory || h.threads != backupKDF.threads {
		t.Fatalf("header %+v %v", h, err)
	}
	// Another password, and any changed byte (header or ciphertext), fail
	// the same way.
	if _, err := openBackup(b, "another password"); !errors.Is(err, errBackupOpen) {
		t.Errorf("wrong password: %v, want %v", err, errBackupOpen)
	}
	for _, i := range []int{len(backupMagic) + 12, backupHeaderLen - 1, backupHeaderLen + 3, len(b) - 1} {
		c := bytes.Clone(b)
		c[i] ^= 1
		if _, err := openBackup(c, backupPassword); !errors.Is(err, errBackupOpen) {
			t.Errorf("byte %d changed: %v, want %v", i, err, errBackupOpen)
		}
	}
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"empty":     {nil, errNotBackup},
		"other":     {[]byte("PK\x03\x04 a zip file, not a backup at all, really not"), errNotBackup},
		"truncated": {b[:backupHeaderLen+5], errNotBackup},
		"version":   {append(append([]byte(backupMagic), 2), b[len(backupMagic)+1:]...), errBackupVersion},
		"memory": {func() []byte {
			c := bytes.Clone(b)
			copy(c[len(backupMagic)+5:], []byte{0xff, 0xff, 0xff, 0xff})
			return c
		}(), errBackupParams},
	} {
		if _, err := openBackup(c.b, backupPassword); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

func TestDecodeBackupPayload(t *testing.T) {
	for _, c := range []struct {
		name, json string
		ok         bool
	}{
		{"minimal", `{"version":1,"node_id":"x","files":{"node.json":"e30="}}`, true},
		{"no identity", `{"version":1,"files":{"panel/accounts.json":"e30="}}`, false},
		{"escape", `{"version":1,"files":{"node.json":"e30=","../etc/passwd":"eA=="}}`, false},
		{"absolute", `{"version":1,"files":{"node.json":"e30=","/panel/x":"eA=="}}`, false},
		{"foreign dir", `{"version":1,"files":{"node.json":"e30=","gateway/access.log":"eA=="}}`, false},
		{"temp file", `{"version":1,"files":{"node.json":"e30=","panel/.accounts.json.1.tmp":"eA=="}}`, false},
		{"bad accounts", `{"version":1,"files":{"node.json":"e30=","panel/accounts.json":"eA=="}}`, false},
		{"version", `{"version":2,"files":{"node.json":"e30="}}`, false},
		{"unknown field", `{"version":1,"x":1,"files":{"node.json":"e30="}}`, false},
		{"trailing", `{"version":1,"files":{"node.json":"e30="}} {}`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := decodeBackupPayload([]byte(c.json)); (err == nil) != c.ok {
				t.Errorf("decodeBackupPayload = %v, want ok %v", err, c.ok)
			}
		})
	}
}

func FuzzDecodeBackupPayload(f *testing.F) {
	f.Add([]byte(`{"version":1,"node_id":"x","files":{"node.json":"e30=","panel/accounts.json":"e30="}}`))
	f.Add([]byte(`{"version":1,"files":{"node.json":"e30=","../x":"eA=="}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeBackupPayload(b)
		if err != nil {
			return
		}
		for name := range p.Files {
			if !validBackupPath(name) || slices.Contains(strings.Split(name, "/"), "..") || path.IsAbs(name) {
				t.Fatalf("accepted path %q", name)
			}
		}
	})
}

func FuzzParseBackupHeader(f *testing.F) {
	b, err := sealBackup(backupPayload{Version: 1, Files: map[string][]byte{state.FileName: []byte("{}")}}, backupPassword)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(backupMagic))
	f.Add(b[:backupHeaderLen])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ct, err := parseBackupHeader(b)
		if err != nil {
			return
		}
		if h.memory > maxBackupArgonMemory || h.time > maxBackupArgonTime || h.threads > maxBackupThreads ||
			len(h.salt) != 16 || len(ct) < 16 || len(b) != backupHeaderLen+len(ct) {
			t.Fatalf("accepted header %+v with %d bytes of ciphertext", h, len(ct))
		}
	})
}

// runBox runs a daemon on dir with HTTP on loopback until ctx is done and
// returns its base URL and the function that waits for Run.
func runBox(t *testing.T, ctx context.Context, dir, name string) (string, func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wait := runAsync(t, ctx, Config{StateDir: dir, Name: name, Listener: ln, Logger: slog.New(slog.DiscardHandler)})
	return "http://" + ln.Addr().String(), wait
}

// postRestore sends a backup to POST /api/v1/restore.
func postRestore(t *testing.T, client *http.Client, base string, backup []byte, password string) (int, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("backup", "box.cbbackup")
	fw.Write(backup)
	mw.WriteField("password", password)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/restore", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBackupRestore backs up a host-mode box with the API and restores it
// on a fresh box: a tampered backup and a wrong password are refused and
// change nothing; the right one restarts the box as the first one (same
// node identity, settings and HTTPS authority).
func TestBackupRestore(t *testing.T) {
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	post := func(url, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	// Box A: settings, then a backup.
	aHTTP, _, aDir := runHTTPS(t, "boxa")
	if resp := post(aHTTP+"/api/v1/settings", `{"name":"rooftop","location":"Carrer Major 5"}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST settings = %d %s", resp.StatusCode, body(t, resp))
	}
	if resp := post(aHTTP+"/api/v1/backup", `{"password":"short"}`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("backup with a short password = %d", resp.StatusCode)
	}
	resp := post(aHTTP+"/api/v1/backup", `{"password":"`+backupPassword+`"}`)
	backup := []byte(body(t, resp))
	if resp.StatusCode != http.StatusOK || !strings.HasSuffix(resp.Header.Get("Content-Disposition"), BackupExt+`"`) {
		t.Fatalf("POST backup = %d %s", resp.StatusCode, resp.Header.Get("Content-Disposition"))
	}
	aNode, _ := os.ReadFile(filepath.Join(aDir, state.FileName))
	aCA, _ := os.ReadFile(filepath.Join(aDir, TLSDir, caCertFile))
	if bytes.Contains(backup, []byte("rooftop")) || bytes.Contains(backup, []byte("private_key")) {
		t.Fatal("the backup is not encrypted")
	}

	// Box B: fresh.
	bDir := filepath.Join(t.TempDir(), "b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bURL, wait := runBox(t, ctx, bDir, "boxb")
	var st statusResponse
	getJSON(t, client, bURL+"/api/v1/status", "", &st)
	bNode, _ := os.ReadFile(filepath.Join(bDir, state.FileName))

	tampered := bytes.Clone(backup)
	tampered[len(tampered)/2] ^= 0x40
	for _, c := range []struct {
		name     string
		b        []byte
		password string
		want     string
	}{
		{"tampered", tampered, backupPassword, "wrong password, or the file was changed or damaged"},
		{"wrong password", backup, "not the password at all", "wrong password"},
		{"not a backup", []byte("hello"), backupPassword, "not a cloudbox backup"},
	} {
		code, msg := postRestore(t, client, bURL, c.b, c.password)
		if code != http.StatusBadRequest || !strings.Contains(msg, c.want) || !strings.Contains(msg, "nothing changed") {
			t.Errorf("restore %s = %d %s, want 400 with %q", c.name, code, msg, c.want)
		}
		if now, _ := os.ReadFile(filepath.Join(bDir, state.FileName)); !bytes.Equal(now, bNode) {
			t.Errorf("restore %s changed the node identity", c.name)
		}
		if _, err := os.Stat(filepath.Join(bDir, restoreDir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("restore %s left %s: %v", c.name, restoreDir, err)
		}
	}

	code, msg := postRestore(t, client, bURL, backup, backupPassword)
	if code != http.StatusAccepted {
		t.Fatalf("restore = %d %s", code, msg)
	}
	if err := wait(); !errors.Is(err, ErrRestart) {
		t.Fatalf("Run after a restore = %v, want ErrRestart", err)
	}
	// As cloudboxd does: start again.
	bURL, wait = runBox(t, ctx, bDir, "boxb")
	defer func() {
		cancel()
		if err := wait(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var settings settingsJSON
	if code := getJSON(t, client, bURL+"/api/v1/settings", testAdminToken, &settings); code != http.StatusOK || settings != (settingsJSON{"rooftop", "Carrer Major 5"}) {
		t.Errorf("settings after restore = %d %+v", code, settings)
	}
	for _, f := range []struct{ name, want string }{{state.FileName, string(aNode)}, {filepath.Join(TLSDir, caCertFile), string(aCA)}} {
		if got, _ := os.ReadFile(filepath.Join(bDir, f.name)); string(got) != f.want {
			t.Errorf("%s after restore differs from box A's", f.name)
		}
	}
	var aSt statusResponse
	getJSON(t, client, aHTTP+"/api/v1/status", "", &aSt)
	if getJSON(t, client, bURL+"/api/v1/status", "", &st); st.NodeID != aSt.NodeID || st.NodeID == "" {
		t.Errorf("node ID after restore %q, want box A's %q", st.NodeID, aSt.NodeID)
	}
	for _, p := range []string{restoreDir, restoreOldDir} {
		if _, err := os.Stat(filepath.Join(bDir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after applying the restore: %v", p, err)
		}
	}
}

// TestApplyRestoreResumes checks that a restore interrupted after some
// entries moved is finished by the next start.
func TestApplyRestoreResumes(t *testing.T) {
	dir := t.TempDir()
	write := func(p, s string) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o700)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(state.FileName, "old node")
	write("panel/accounts.json", "old accounts")
	write("services/x", "old services, not in the backup")
	write("setup-code.txt", "stays")
	// Staged, and node.json already moved in by an interrupted run.
	write(filepath.Join(restoreDir, "panel/accounts.json"), "new accounts")
	write(filepath.Join(restoreDir, restoreMarker), "node.json\npanel\n")
	write(filepath.Join(restoreOldDir, state.FileName), "old node")
	write(state.FileName, "new node")

	ok, err := applyRestore(dir)
	if err != nil || !ok {
		t.Fatalf("applyRestore = %v %v", ok, err)
	}
	for p, want := range map[string]string{state.FileName: "new node", "panel/accounts.json": "new accounts", "setup-code.txt": "stays"} {
		if got, _ := os.ReadFile(filepath.Join(dir, p)); string(got) != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	for _, p := range []string{"services", restoreDir, restoreOldDir} {
		if _, err := os.Stat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s remains: %v", p, err)
		}
	}
	if ok, err := applyRestore(dir); ok || err != nil {
		t.Errorf("second applyRestore = %v %v, want nothing to do", ok, err)
	}
}

// setFile puts the file at path into the file input sel, as a person
// choosing it does.
func setFile(ctx context.Context, t *testing.T, p *browsertest.Page, sel, path string) {
	t.Helper()
	var r struct {
		Result struct {
			ObjectID string `json:"objectId"`
		} `json:"result"`
	}
	if err := p.Call(ctx, "Runtime.evaluate", map[string]any{"expression": `document.querySelector("` + sel + `")`}, &r); err != nil || r.Result.ObjectID == "" {
		t.Fatalf("finding %s: %v", sel, err)
	}
	if err := p.Call(ctx, "DOM.setFileInputFiles", map[string]any{"files": []string{path}, "objectId": r.Result.ObjectID}, nil); err != nil {
		t.Fatalf("choosing %s: %v", path, err)
	}
}

// TestBackupRestoreBrowser restores, in headless Chromium, the backup of
// box A through the first-boot wizard of a fresh box B: a wrong password is
// refused next to its field, the right one makes B restart as A, where A's
// administrator logs in.
func TestBackupRestoreBrowser(t *testing.T) {
	// Box A, set up (its administrator written as the wizard would).
	aDir := filepath.Join(t.TempDir(), "a")
	if _, err := state.Open(t.Context(), state.Config{Dir: aDir, Name: "boxa"}); err != nil {
		t.Fatal(err)
	}
	acc, err := openAccounts(aDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(acc.setAccount("anna", roleAdmin, backupPassword, false, time.Now()), acc.setBox(boxSettings{Name: "rooftop"}), acc.finishSetup()); err != nil {
		t.Fatal(err)
	}
	p, err := collectBackup(aDir, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	node, err := state.Open(t.Context(), state.Config{Dir: aDir})
	if err != nil {
		t.Fatal(err)
	}
	p.NodeID = node.ID()
	sealed, err := sealBackup(p, backupPassword)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "a"+BackupExt)
	if err := os.WriteFile(file, sealed, 0o600); err != nil {
		t.Fatal(err)
	}

	// Box B, fresh.
	bDir := filepath.Join(t.TempDir(), "b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, wait := runBox(t, ctx, bDir, "boxb")
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	var st statusResponse
	getJSON(t, client, base+"/api/v1/status", "", &st) // the setup code exists once it answers
	codeText, err := os.ReadFile(filepath.Join(bDir, SetupCodeFile))
	if err != nil {
		t.Fatal(err)
	}
	code, _, _ := strings.Cut(strings.TrimPrefix(string(codeText), "cloudbox setup code: "), "\n")

	bctx, bcancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer bcancel()
	browser := browsertest.Start(t)
	page, err := browser.NewPage(bctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := page.Navigate(bctx, base+"/setup"); err != nil {
		t.Fatal(err)
	}
	if err := page.Do(bctx, `document.querySelector("#code").value = "`+code+`"; document.querySelector("form button").click()`); err != nil {
		t.Fatal(err)
	}
	restore := func(password string) string {
		t.Helper()
		setFile(bctx, t, page, "#restore-file", file)
		if err := page.Do(bctx, `document.querySelector("details").open = true; document.querySelector("#restore-password").value = "`+password+`";
			document.querySelector("form[action='/setup/restore'] button").click()`); err != nil {
			t.Fatal(err)
		}
		var text string
		page.Eval(bctx, `document.querySelector("main").innerText`, &text)
		return text
	}
	if got := restore("not the password at all"); !strings.Contains(got, "wrong password") || !strings.Contains(got, "Nothing was changed") {
		t.Errorf("restore with a wrong password shows:\n%s", got)
	}
	var invalid string
	page.Eval(bctx, `document.querySelector("#restore-password").getAttribute("aria-invalid")`, &invalid)
	if invalid != "true" {
		t.Errorf("the password field is not marked invalid after a wrong password")
	}
	if got := restore(backupPassword); !strings.Contains(got, "Backup restored") {
		t.Fatalf("restore shows:\n%s", got)
	}
	if err := wait(); !errors.Is(err, ErrRestart) {
		t.Fatalf("Run after the restore = %v, want ErrRestart", err)
	}
	if _, err := os.Stat(filepath.Join(bDir, SetupCodeFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("setup code file after a restore: %v", err)
	}
	base, wait = runBox(t, ctx, bDir, "")
	defer func() {
		cancel()
		if err := wait(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if err := page.Navigate(bctx, base+"/login"); err != nil {
		t.Fatal(err)
	}
	if err := page.Do(bctx, `document.querySelector("#username").value = "anna"; document.querySelector("#password").value = "`+backupPassword+`";
		document.querySelector("form button").click()`); err != nil {
		t.Fatal(err)
	}
	var text string
	page.Eval(bctx, `location.pathname + " " + document.querySelector("h1").innerText + " " + document.querySelector("code.id").innerText`, &text)
	if want := "/ rooftop " + node.ID(); text != want {
		t.Errorf("after the restore, A's administrator sees %q, want %q", text, want)
	}
}
