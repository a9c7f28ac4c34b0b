package openwrt

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/testenv"
)

// freePort returns a loopback address with a port nobody listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRouterDaemonServes starts each router cloudboxd under qemu-user on a
// fresh state directory (host mode, as on the router) and waits for its
// API: /healthz answers and /api/v1/status names the components, so a
// profile that builds but cannot start (a missing embedded file, a
// component that fails without what it left out) fails here.
func TestRouterDaemonServes(t *testing.T) {
	for _, b := range routerBoards(t) {
		t.Run(b.Name, func(t *testing.T) {
			qemu := testenv.RequireCommand(t, b.QEMUUser, "qemu-user-static")
			httpAddr := freePort(t)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, qemu, daemon(t, b), "--state-dir", t.TempDir(), "--http", httpAddr,
				"--dns", freePort(t), "--gateway-local", "off")
			var log strings.Builder
			cmd.Stdout, cmd.Stderr = &log, &log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				cmd.Process.Signal(os.Interrupt)
				select {
				case <-exited:
				case <-time.After(20 * time.Second):
					cmd.Process.Kill()
					<-exited
					t.Error("cloudboxd did not stop within 20 s of SIGINT")
				}
			}()
			client := &http.Client{Timeout: 5 * time.Second}
			get := func(path string) (int, string, error) {
				resp, err := client.Get("http://" + httpAddr + path)
				if err != nil {
					return 0, "", err
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				return resp.StatusCode, string(body), err
			}
			for {
				code, _, err := get("/healthz")
				if err == nil && code == http.StatusOK {
					break
				}
				select {
				case err := <-exited:
					exited <- err
					t.Fatalf("cloudboxd exited before answering (%v):\n%s", err, log.String())
				case <-ctx.Done():
					t.Fatalf("no answer on /healthz within 90 s:\n%s", log.String())
				case <-time.After(200 * time.Millisecond):
				}
			}
			code, body, err := get("/api/v1/status")
			if err != nil || code != http.StatusOK || !strings.Contains(body, `"overlay"`) || !strings.Contains(body, `"dns"`) {
				t.Errorf("/api/v1/status: %d %q, %v; want 200 with the components", code, body, err)
			}
			if code, body, _ := get("/setup"); code != http.StatusOK || !strings.Contains(body, `name="code"`) {
				t.Errorf("/setup: %d %.200q; want the setup code form", code, body)
			}
		})
	}
}
