package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/testenv"
)

// rss50BudgetKiB is the most resident memory one overlay node with 50
// connected peers may use, idle and under light traffic (pings to every
// peer). Measured: about 15.5 MiB (binary about 7 MiB). Under a full-speed
// stream it is higher (see bench/README.md); make bench-overlay measures
// that.
const rss50BudgetKiB = 22 << 10

// TestRSS50 builds overlaynode as a box runs it (no race detector, no cgo)
// and runs bench/overlay-rss50.sh without its iperf3 streams: 50 peers in
// another namespace, one ping each (50 handshakes), idle, then five pings a
// second to all of them. The node's peak RSS must stay within the budget.
func TestRSS50(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range [][2]string{{"ip", "iproute2"}, {"ping", "iputils-ping"}, {"bash", "bash"}} {
		testenv.RequireCommand(t, c[0], c[1])
	}
	root := testenv.ModuleRoot(t)
	bin := filepath.Join(t.TempDir(), "overlaynode")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./bench/overlaynode")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building overlaynode: %v\n%s", err, out)
	}
	run := exec.CommandContext(ctx, "bash", filepath.Join(root, "bench", "overlay-rss50.sh"), bin)
	run.Env = append(os.Environ(), "STREAM50=0", "IDLE50=3")
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("overlay-rss50.sh: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`pings_ok=50/50`).Match(out) {
		t.Fatalf("not every peer answered:\n%s", out)
	}
	phases := regexp.MustCompile(`rss50 phase=(\w+) rss_kib=\d+ hwm_kib=(\d+)`).FindAllSubmatch(out, -1)
	if len(phases) != 2 {
		t.Fatalf("want the idle and light phases in the output:\n%s", out)
	}
	for _, p := range phases {
		hwm, _ := strconv.Atoi(string(p[2]))
		t.Logf("%s: peak RSS %.1f MiB", p[1], float64(hwm)/1024)
		if hwm > rss50BudgetKiB {
			t.Errorf("%s: peak RSS %d KiB with 50 peers, budget %d KiB", p[1], hwm, rss50BudgetKiB)
		}
	}
}
