package proxy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// readLogs returns the names and the concatenated contents of dir's files.
func readLogs(t *testing.T, dir string) ([]string, string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var all strings.Builder
	for _, e := range ents {
		names = append(names, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	return names, all.String()
}

// TestAccessLogFields sends a request with a secret in its query through
// the proxy and checks that only the chosen fields are written.
func TestAccessLogFields(t *testing.T) {
	home := newBox(t, "home")
	plain := newOrigin(t, false)
	for _, tc := range []struct {
		fields     string
		wantSecret bool
	}{
		{"time,user,box,host,status,bytes", false},
		{"user,url", true},
	} {
		t.Run(tc.fields, func(t *testing.T) {
			fields, err := ParseAccessLogFields(tc.fields)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			al, err := OpenAccessLog(AccessLogConfig{Dir: dir, Fields: fields})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { al.Close() })
			cfg := authConfig(home)
			cfg.AccessLog = al.Log
			_, httpAddr, _ := startProxy(t, cfg)
			alice := "alice:" + home.issue(t, "alice", time.Hour)
			r := curl(t, "-x", "http://"+httpAddr, "-U", alice, plain.URL+"/small?token=s3cr3t-42")
			if r.code != 200 {
				t.Fatalf("got %d (exit %d), want 200", r.code, r.exit)
			}
			names, got := readLogs(t, dir)
			if want := "access-" + time.Now().UTC().Format("2006-01-02") + ".log"; !slices.Equal(names, []string{want}) {
				t.Fatalf("files %v, want [%s]", names, want)
			}
			lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
			if len(lines) != 1 {
				t.Fatalf("log has %d lines, want 1:\n%s", len(lines), got)
			}
			var keys []string
			for kv := range strings.FieldsSeq(lines[0]) {
				k, _, _ := strings.Cut(kv, "=")
				keys = append(keys, k)
			}
			if !slices.Equal(keys, fields) {
				t.Errorf("line %q has fields %v, want %v", lines[0], keys, fields)
			}
			if !strings.Contains(lines[0], "user=alice") {
				t.Errorf("line %q lacks user=alice", lines[0])
			}
			if strings.Contains(got, "s3cr3t-42") != tc.wantSecret || strings.Contains(got, "/small") != tc.wantSecret {
				t.Errorf("line %q: path and query present = %v, want %v", lines[0], !tc.wantSecret, tc.wantSecret)
			}
		})
	}
}

// TestAccessLogRetention moves a fake clock over days and checks that
// files older than the retention go, at open, on a new day and by Prune.
func TestAccessLogRetention(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"access-2024-12-01.log", "access-2025-01-07.log", "access-2025-01-08.log", "other.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	now := time.Date(2025, 1, 10, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	al, err := OpenAccessLog(AccessLogConfig{Dir: dir, Fields: []string{"host"}, Days: 3, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	check := func(want ...string) {
		t.Helper()
		if names, _ := readLogs(t, dir); !slices.Equal(names, want) {
			t.Errorf("at %v files are %v, want %v", clock(), names, want)
		}
	}
	check("access-2025-01-08.log", "other.txt") // 2025-01-08..10 are kept
	al.Log(AccessEntry{Host: "a.example"})
	check("access-2025-01-08.log", "access-2025-01-10.log", "other.txt")
	advance(24 * time.Hour)
	al.Log(AccessEntry{Host: "b.example"}) // a new day prunes
	check("access-2025-01-10.log", "access-2025-01-11.log", "other.txt")
	advance(3 * 24 * time.Hour)
	if err := al.Prune(); err != nil {
		t.Fatal(err)
	}
	check("other.txt")
}

// TestAccessLogBound checks the per-day size cap: lines beyond it are
// dropped and counted.
func TestAccessLogBound(t *testing.T) {
	dir := t.TempDir()
	al, err := OpenAccessLog(AccessLogConfig{Dir: dir, Fields: []string{"host"}, MaxDayBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	for range 20 {
		al.Log(AccessEntry{Host: "abcdefgh.example"}) // 22 bytes a line
	}
	_, got := readLogs(t, dir)
	if len(got) != 88 || al.Dropped() != 16 {
		t.Errorf("wrote %d bytes, dropped %d; want 88 and 16", len(got), al.Dropped())
	}
}

// TestAccessLogQuoting checks that a hostile host cannot forge a line.
func TestAccessLogQuoting(t *testing.T) {
	dir := t.TempDir()
	al, err := OpenAccessLog(AccessLogConfig{Dir: dir, Fields: []string{"host", "user"}})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	al.Log(AccessEntry{Host: "x\nhost=evil user=root", User: ""})
	_, got := readLogs(t, dir)
	if want := `host="x\nhost=evil user=root" user=""` + "\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseAccessLogFields(t *testing.T) {
	if f, err := ParseAccessLogFields(""); f != nil || err != nil {
		t.Errorf("empty: %v %v, want nil nil", f, err)
	}
	if f, err := ParseAccessLogFields(" Time, host ,status"); err != nil || !slices.Equal(f, []string{"time", "host", "status"}) {
		t.Errorf("got %v %v", f, err)
	}
	for _, bad := range []string{"time,path", "host,host", "time,,host"} {
		if _, err := ParseAccessLogFields(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
