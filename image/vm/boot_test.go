package vm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/image"
	"github.com/cloudbox/cloudbox/image/vm"
	"github.com/cloudbox/cloudbox/internal/testenv"
)

// bootTimeout bounds one boot under TCG emulation on a busy 2-core CI
// machine; a quiet machine needs well under a minute.
const bootTimeout = 4 * time.Minute

type status struct {
	Version  string `json:"version"`
	Board    string `json:"board"`
	NodeName string `json:"node_name"`
	NodeID   string `json:"node_id"`
	UptimeS  int64  `json:"uptime_s"`
}

// syncBuffer collects the serial console for the failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startVM runs a VM; stop stops it and waits (done reports its end).
func startVM(t *testing.T, cfg vm.Config) (done <-chan error, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- vm.Run(ctx, cfg) }()
	return ch, func() {
		cancel()
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("vm.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("VM did not stop within 30 s")
		}
	}
}

// boot starts the image, waits until /api/v1/status answers, stops the VM
// and returns the status and how long it took to answer.
func boot(t *testing.T, img string, uefi bool) (status, time.Duration) {
	t.Helper()
	port := freePort(t)
	console := &syncBuffer{}
	start := time.Now()
	done, stop := startVM(t, vm.Config{Image: img, HTTPPort: port, Console: console, UEFI: uefi})
	defer stop()

	client := &http.Client{Timeout: 5 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/status", port)
	deadline := time.Now().Add(bootTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("VM exited before answering: %v\nconsole:\n%s", err, console)
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			var st status
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				took := time.Since(start)
				// A fresh box shows its first-boot setup code on the
				// console (HDMI and serial), for whoever plugged it in.
				codeRE := regexp.MustCompile(`Setup code: [A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}`)
				for wait := time.Now().Add(10 * time.Second); !codeRE.MatchString(console.String()); time.Sleep(200 * time.Millisecond) {
					if time.Now().After(wait) {
						t.Errorf("the serial console does not show the setup code:\n%s", console)
						break
					}
				}
				return st, took
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("no answer from %s within %v\nconsole:\n%s", url, bootTimeout, console)
	return status{}, 0
}

func TestBoot(t *testing.T) {
	testenv.RequireCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	testenv.RequireCommand(t, "qemu-system-aarch64", "qemu-system-arm")
	for _, board := range []string{"amd64", "arm64"} {
		t.Run(board, func(t *testing.T) {
			b, err := boards.Lookup(board)
			if err != nil {
				t.Fatal(err)
			}
			img := filepath.Join(t.TempDir(), board+".img")
			const version = "v0.0.0-boottest"
			start := time.Now()
			if _, err := image.Build(context.Background(), image.Config{
				Board: b, Out: img, Size: 1400 << 20, Hostname: "cbboot", Version: version,
				SourceDir: testenv.ModuleRoot(t),
			}); err != nil {
				t.Fatalf("building image: %v", err)
			}
			t.Logf("built %s image in %v", board, time.Since(start).Round(time.Millisecond))

			first, took := boot(t, img, false)
			t.Logf("BOOT board=%s first_status_s=%.1f", board, took.Seconds())
			if first.Version != version || first.Board != board {
				t.Errorf("status reports version %q board %q, want %q %q", first.Version, first.Board, version, board)
			}
			if first.NodeID == "" || first.NodeName != "cbboot" {
				t.Errorf("status reports node_id %q node_name %q, want an id and cbboot", first.NodeID, first.NodeName)
			}

			// Boot the same disk again: /perm must have kept the identity.
			second, took := boot(t, img, false)
			t.Logf("BOOT board=%s second_status_s=%.1f", board, took.Seconds())
			if second.NodeID != first.NodeID {
				t.Errorf("node_id changed across boots: %q then %q (/perm did not persist)", first.NodeID, second.NodeID)
			}
			if b.UEFIBootManager == "" {
				return
			}
			// As a PC does: firmware, the image's boot manager, its loader
			// entry, the kernel.
			third, took := boot(t, img, true)
			t.Logf("BOOT board=%s uefi_status_s=%.1f", board, took.Seconds())
			if third.NodeID != first.NodeID || third.Version != version {
				t.Errorf("UEFI boot: node_id %q version %q, want %q %q", third.NodeID, third.Version, first.NodeID, version)
			}
		})
	}
}

func TestInspectRefusesNonImages(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.img")
	if err := os.WriteFile(junk, bytes.Repeat([]byte{0xa5}, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path string }{
		{"missing", filepath.Join(dir, "nope.img")},
		{"junk", junk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := vm.Inspect(tc.path); err == nil {
				t.Fatal("Inspect accepted a file that is not a cloudbox image")
			}
		})
	}
}
