// Package netnstest builds throwaway network topologies for the overlay's
// tests: network namespaces, veth pairs and bridges, created with iproute2
// and removed when the test ends, even when it fails. Tests that use it need
// root and fail (never skip) without it.
package netnstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/testenv"
)

// commandTimeout bounds every iproute2/nft invocation.
const commandTimeout = 30 * time.Second

var (
	counter atomic.Int64
	sweep   sync.Once
)

// removeStale deletes namespaces that earlier test processes left behind
// when they were killed before their cleanup ran (a test timeout).
func removeStale() {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		parts := strings.Split(e.Name(), "-")
		if len(parts) != 4 || parts[0] != "cbov" {
			continue
		}
		pid, err := strconv.Atoi(parts[2])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its test process still runs
		}
		command("ip", "netns", "del", e.Name())
	}
}

// NS is a network namespace that lives until the test ends.
type NS struct {
	// Name is the namespace name under /run/netns.
	Name string
	t    testing.TB
}

// New creates a namespace with loopback up. short names it in failures.
func New(t testing.TB, short string) *NS {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "iproute2")
	sweep.Do(removeStale)
	name := fmt.Sprintf("cbov-%s-%d-%d", short, os.Getpid(), counter.Add(1))
	run(t, "ip", "netns", "add", name)
	ns := &NS{Name: name, t: t}
	t.Cleanup(func() {
		if out, err := command("ip", "netns", "del", name); err != nil {
			t.Errorf("deleting namespace %s: %v: %s", name, err, out)
		}
	})
	ns.IP("link", "set", "lo", "up")
	return ns
}

func command(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := command(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// IP runs `ip -n NS args...` and fails the test on error.
func (ns *NS) IP(args ...string) string {
	ns.t.Helper()
	return run(ns.t, "ip", append([]string{"-n", ns.Name}, args...)...)
}

// Run runs a command inside the namespace and fails the test on error.
func (ns *NS) Run(args ...string) string {
	ns.t.Helper()
	return run(ns.t, "ip", append([]string{"netns", "exec", ns.Name}, args...)...)
}

// Try runs a command inside the namespace and returns its output and error.
func (ns *NS) Try(args ...string) (string, error) {
	return command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
}

// Command returns a command that runs inside the namespace; the caller
// starts and stops it.
func (ns *NS) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name}, args...)...)
}

// Open returns an open file of the namespace (for setns or netlink), closed
// when the test ends.
func (ns *NS) Open() *os.File {
	ns.t.Helper()
	f, err := os.Open("/run/netns/" + ns.Name)
	if err != nil {
		ns.t.Fatal(err)
	}
	ns.t.Cleanup(func() { f.Close() })
	return f
}

// Veth connects a and b with a veth pair: aIf in a with aAddr, bIf in b
// with bAddr (addresses with prefix length; empty for none). Both ends are up.
func Veth(t testing.TB, a *NS, aIf, aAddr string, b *NS, bIf, bAddr string) {
	t.Helper()
	// Temporary names in the root namespace, unique across concurrent test
	// processes and at most 15 bytes.
	id := counter.Add(1)
	tmpA := fmt.Sprintf("cb%x-%xa", os.Getpid(), id)
	tmpB := fmt.Sprintf("cb%x-%xb", os.Getpid(), id)
	run(t, "ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB)
	run(t, "ip", "link", "set", tmpA, "netns", a.Name, "name", aIf)
	run(t, "ip", "link", "set", tmpB, "netns", b.Name, "name", bIf)
	for _, end := range []struct {
		ns   *NS
		ifc  string
		addr string
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		if end.addr != "" {
			end.ns.IP("addr", "add", end.addr, "dev", end.ifc)
		}
		end.ns.IP("link", "set", end.ifc, "up")
	}
}

// Bridge creates bridge br in ns, up.
func (ns *NS) Bridge(br string) {
	ns.t.Helper()
	ns.IP("link", "add", br, "type", "bridge")
	ns.IP("link", "set", br, "up")
}

// Attach connects node to the bridge br in switch ns through a veth pair:
// nodeIf in node with addr, and a port in the switch.
func Attach(t testing.TB, sw *NS, br string, node *NS, nodeIf, addr string) {
	t.Helper()
	port := fmt.Sprintf("p%d", counter.Add(1))
	Veth(t, sw, port, "", node, nodeIf, addr)
	sw.IP("link", "set", port, "master", br)
}
