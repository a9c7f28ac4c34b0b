package meshtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/testenv"
	"golang.org/x/sys/unix"
)

// binaries are cloudboxd and cloudbox, built once per test process.
type binaries struct {
	daemon, cli string
}

var (
	buildOnce sync.Once
	buildDir  string // removed by TestMain
	built     binaries
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// build compiles cloudboxd (with the race detector when the test has it)
// and cloudbox, once, into a temporary directory that TestMain removes.
func build(t *testing.T) binaries {
	t.Helper()
	testenv.RequireCommand(t, "go", "golang")
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshtest-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		built = binaries{daemon: filepath.Join(dir, "cloudboxd"), cli: filepath.Join(dir, "cloudbox")}
		root := testenv.ModuleRoot(t)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, b := range []struct {
			out, pkg string
			race     bool
		}{{built.daemon, "./cmd/cloudboxd", raceEnabled}, {built.cli, "./cmd/cloudbox", false}} {
			wg.Go(func() {
				args := []string{"build", "-o", b.out}
				if b.race {
					args = append(args, "-race")
				}
				cmd := exec.Command("go", append(args, b.pkg)...)
				cmd.Dir = root
				if out, err := cmd.CombinedOutput(); err != nil {
					errs[i] = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				}
			})
		}
		wg.Wait()
		buildErr = errors.Join(errs...)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// cli runs `cloudbox args...` on the host (the commands touch only files)
// and returns its standard output without the final newline.
func cli(t *testing.T, bin binaries, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin.cli, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cloudbox %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// box is one cloudbox: a namespace with an underlay address, a state
// directory, and at most one running cloudboxd.
type box struct {
	name  string
	ns    *netnstest.NS
	addr  netip.Addr // underlay
	dir   string     // --state-dir
	token string     // invitation, "" for the founder
	args  []string   // more cloudboxd arguments, for community
	bin   binaries

	// Set by start.
	d      *daemon
	client *http.Client
}

// daemon is one run of cloudboxd.
type daemon struct {
	cmd    *exec.Cmd
	log    *netnstest.Buffer
	exited chan struct{}
	err    error // of Wait, set before exited is closed
	once   sync.Once
}

// apiAddr is where every daemon serves its API, inside its namespace: the
// test reaches it through nsDialer, and requests come from loopback, which
// POST /api/v1/overlay/revoke requires.
const apiAddr = "127.0.0.1:8080"

// apiToken is the administrator's API token of every daemon
// (--api-token-file); the boxes' clients and the CLI send it.
const apiToken = "meshtest-api-token-0123456789abcdef"

// bearer adds apiToken to every request.
type bearer struct{ rt http.RoundTripper }

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+apiToken)
	return b.rt.RoundTrip(req)
}

// prepare checks the tools, builds the binaries and returns them with a
// new switch.
func prepare(t *testing.T) (binaries, *netnstest.NS) {
	t.Helper()
	requireTools(t)
	return build(t), newSwitch(t)
}

// newSwitch returns a namespace with the bridge br0 that newBox attaches
// boxes to.
func newSwitch(t *testing.T) *netnstest.NS {
	t.Helper()
	sw := netnstest.New(t, "sw")
	sw.Bridge("br0")
	return sw
}

// newBox returns box name in a new namespace on the bridge br0 of sw, at
// 192.0.2.n.
func newBox(t *testing.T, bin binaries, sw *netnstest.NS, name string, n int) *box {
	t.Helper()
	b := newBoxIn(t, bin, netnstest.New(t, name), name, netip.AddrFrom4([4]byte{192, 0, 2, byte(n)}))
	netnstest.Attach(t, sw, "br0", b.ns, "eth0", b.addr.String()+"/24")
	return b
}

// newBoxIn returns box name in ns, whose underlay address is addr; the
// caller connects ns.
func newBoxIn(t *testing.T, bin binaries, ns *netnstest.NS, name string, addr netip.Addr) *box {
	t.Helper()
	b := &box{name: name, ns: ns, addr: addr, dir: filepath.Join(t.TempDir(), name), bin: bin}
	b.client = &http.Client{
		Timeout:   10 * time.Second,
		Transport: bearer{&http.Transport{DialContext: nsDialer("/run/netns/" + b.ns.Name), DisableKeepAlives: true}},
	}
	return b
}

// nsDialer returns a DialContext that opens its sockets inside the network
// namespace at path (see inNetNS).
func nsDialer(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNetNS(path, func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// inNetNS calls f on a locked OS thread switched into the network namespace
// at path, and switches back afterwards: sockets f opens stay in the
// namespace. A thread that cannot switch back is left locked, so that the
// runtime ends it with the goroutine.
func inNetNS(path string, f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("entering %s: %w", path, err)
			return
		}
		err = f()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- err
	}()
	return <-ch
}

var listeningRE = regexp.MustCompile(`msg="http listening"`)

// start runs cloudboxd in the box's namespace with args after the common
// ones and waits, at most 60 s, until it serves HTTP. It is stopped when
// the test ends.
func (b *box) start(t *testing.T, args ...string) {
	t.Helper()
	d := b.startNoWait(t, b.dir, args...)
	deadline := time.Now().Add(60 * time.Second)
	for !listeningRE.MatchString(d.log.String()) {
		select {
		case <-d.exited:
			t.Fatalf("cloudboxd %s exited during startup: %v\n%s", b.name, d.err, d.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("cloudboxd %s does not serve HTTP after 60s:\n%s", b.name, d.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startNoWait runs cloudboxd with state directory dir and returns at once.
func (b *box) startNoWait(t *testing.T, dir string, args ...string) *daemon {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "api-token")
	if err := os.WriteFile(tokenFile, []byte(apiToken), 0o600); err != nil {
		t.Fatal(err)
	}
	all := append([]string{b.bin.daemon, "--state-dir", dir, "--name", b.name, "--http", apiAddr, "--api-token-file", tokenFile}, args...)
	d := &daemon{cmd: b.ns.Command(context.Background(), all...), log: new(netnstest.Buffer), exited: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	// The daemon dies with the test process, whatever happens.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting cloudboxd %s: %v", b.name, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.exited)
	}()
	b.d = d
	t.Cleanup(func() {
		d.stop(t, b.name)
		if t.Failed() {
			t.Logf("cloudboxd %s %q log:\n%s", b.name, args, d.log.String())
		}
	})
	return d
}

// stop stops the running daemon with SIGTERM and checks that it exits 0
// within 15 s, without a data race.
func (b *box) stop(t *testing.T) {
	t.Helper()
	b.d.stop(t, b.name)
}

func (d *daemon) stop(t *testing.T, name string) {
	t.Helper()
	d.once.Do(func() {
		select {
		case <-d.exited:
		default:
			d.cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-d.exited:
			if d.err != nil {
				t.Errorf("cloudboxd %s exited with %v after SIGTERM", name, d.err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("cloudboxd %s did not stop within 15s of SIGTERM; killing it", name)
			d.cmd.Process.Kill()
			<-d.exited
		}
		if strings.Contains(d.log.String(), "DATA RACE") {
			t.Errorf("cloudboxd %s reported a data race:\n%s", name, d.log.String())
		}
	})
}

// waitExit waits, at most timeout, for a daemon that must exit by itself
// and returns its exit code.
func (d *daemon) waitExit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-d.exited:
	case <-time.After(timeout):
		t.Fatalf("cloudboxd did not exit within %v:\n%s", timeout, d.log.String())
	}
	d.once.Do(func() {}) // it exited by itself; stop has nothing to check
	return d.cmd.ProcessState.ExitCode()
}

// get fetches path from the box's API and decodes the JSON answer into v
// (when not nil); it returns the status code.
func (b *box) get(path string, v any) (int, error) {
	resp, err := b.client.Get("http://" + apiAddr + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			return resp.StatusCode, fmt.Errorf("GET %s: %v: %s", path, err, body)
		}
	}
	return resp.StatusCode, nil
}

// getText fetches path and returns the body.
func (b *box) getText(t *testing.T, path string) string {
	t.Helper()
	resp, err := b.client.Get("http://" + apiAddr + path)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", path, b.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s on %s = %d %v:\n%s", path, b.name, resp.StatusCode, err, body)
	}
	return string(body)
}

// peer is an element of GET /api/v1/overlay/peers.
type peer struct {
	Name          string   `json:"name"`
	NodeID        string   `json:"node_id"`
	IPv4          string   `json:"ipv4"`
	IPv6          string   `json:"ipv6"`
	Groups        []string `json:"groups"`
	Self          bool     `json:"self"`
	Endpoints     []string `json:"endpoints"`
	Endpoint      string   `json:"endpoint"`
	Direct        bool     `json:"direct"`
	Via           string   `json:"via"`
	RTTMs         *float64 `json:"rtt_ms"`
	RxBytes       uint64   `json:"rx_bytes"`
	TxBytes       uint64   `json:"tx_bytes"`
	LastHandshake *string  `json:"last_handshake"`
}

// peers returns the box's view of the community.
func (b *box) peers() ([]peer, error) {
	var ps []peer
	code, err := b.get("/api/v1/overlay/peers", &ps)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("GET /api/v1/overlay/peers on %s = %d", b.name, code)
	}
	return ps, err
}

// peerNamed returns the box's view of the member name.
func (b *box) peerNamed(name string) (peer, error) {
	ps, err := b.peers()
	if err != nil {
		return peer{}, err
	}
	for _, p := range ps {
		if p.Name == name {
			return p, nil
		}
	}
	return peer{}, fmt.Errorf("%s does not list %s", b.name, name)
}

// self returns the box's own entry.
func (b *box) self(t *testing.T) peer {
	t.Helper()
	// Right after a start the overlay may still be starting.
	var ps []peer
	netnstest.WaitFor(t, 20*time.Second, func() string {
		var err error
		if ps, err = b.peers(); err != nil {
			return err.Error()
		}
		return ""
	})
	for _, p := range ps {
		if p.Self {
			return p
		}
	}
	t.Fatalf("%s does not list itself", b.name)
	return peer{}
}

// componentStatus is one component of GET /api/v1/status.
type componentStatus struct {
	OK     bool              `json:"ok"`
	Error  string            `json:"error"`
	Detail map[string]string `json:"detail"`
}

func (b *box) overlayStatus(t *testing.T) componentStatus {
	t.Helper()
	var st struct {
		Components map[string]componentStatus `json:"components"`
	}
	if code, err := b.get("/api/v1/status", &st); err != nil || code != http.StatusOK {
		t.Fatalf("GET /api/v1/status on %s = %d %v", b.name, code, err)
	}
	return st.Components["overlay"]
}

var rttRE = regexp.MustCompile(`= ([0-9.]+)/([0-9.]+)/([0-9.]+)/`)

// ping sends count pings from ns to addr, 200 ms apart, each waiting at
// most wait seconds, and returns the average RTT; it fails unless every
// ping is answered.
func ping(ns *netnstest.NS, addr string, count, wait int) (time.Duration, error) {
	out, err := ns.Try("ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", "0.2", "-W", strconv.Itoa(wait), addr)
	if err != nil {
		return 0, fmt.Errorf("ping %s from %s: %v\n%s", addr, ns.Name, err, out)
	}
	if !strings.Contains(out, " 0% packet loss") {
		return 0, fmt.Errorf("ping %s from %s lost packets:\n%s", addr, ns.Name, out)
	}
	m := rttRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no RTT in ping output:\n%s", out)
	}
	ms, _ := strconv.ParseFloat(m[2], 64)
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// pingUntil pings addr from ns once a second until one answer arrives, at
// most timeout, and returns how long that took.
func pingUntil(ns *netnstest.NS, addr string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		_, err := ping(ns, addr, 1, 1)
		if err == nil {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("no answer within %v: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// blockUDP makes ns drop all UDP to and from addr; the returned function
// lifts the block.
func blockUDP(t *testing.T, ns *netnstest.NS, addr netip.Addr) (unblock func()) {
	t.Helper()
	rules := fmt.Sprintf(`table inet meshtest {
	chain in { type filter hook input priority 0; ip saddr %[1]s meta l4proto udp drop; }
	chain out { type filter hook output priority 0; ip daddr %[1]s meta l4proto udp drop; }
}`, addr)
	cmd := ns.Command(t.Context(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s", ns.Name, err, out)
	}
	return func() { ns.Run("nft", "delete", "table", "inet", "meshtest") }
}

// masquerade makes ns a NAT router: it forwards and hides everything that
// leaves through wan behind wan's address. With random it picks a new
// random port for every mapping (endpoint-dependent mapping, a "symmetric"
// NAT); without it Linux keeps the source port when it can, so a mapping
// serves every destination (endpoint-independent mapping). Both filter
// inbound packets by conntrack: only answers to what went out come in.
//
// Like every home router, it drops unsolicited packets to itself on wan.
// Without that, a hole-punching ping that arrives before the local box's
// own leaves would stay in conntrack as a connection to the router, and
// masquerade would then map the local box to another port, breaking
// endpoint-independent mapping for that peer.
func masquerade(t *testing.T, ns *netnstest.NS, wan string, random bool) {
	t.Helper()
	ns.Run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	flags := ""
	if random {
		flags = " random"
	}
	nft(t, ns, fmt.Sprintf(`table ip nat {
	chain post { type nat hook postrouting priority srcnat; oifname %[1]q masquerade%[2]s; }
	chain in { type filter hook input priority filter; iifname %[1]q ct state new drop; }
}`, wan, flags))
}

// nft loads rules into ns.
func nft(t *testing.T, ns *netnstest.NS, rules string) {
	t.Helper()
	cmd := ns.Command(t.Context(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s", ns.Name, err, out)
	}
}

// requireTools fails the test unless it runs as root with the commands
// the mesh tests use.
func requireTools(t *testing.T, extra ...[2]string) {
	t.Helper()
	testenv.RequireRoot(t)
	for _, c := range append([][2]string{{"ip", "iproute2"}, {"ping", "iputils-ping"}, {"nft", "nftables"}, {"sysctl", "procps"}}, extra...) {
		testenv.RequireCommand(t, c[0], c[1])
	}
}

// community founds a community on boxes[0] and starts every box, the
// others joining through boxes[0] at bootstrap. It waits until every box
// lists every member and returns the boxes' overlay addresses and names by
// box name (the founder's member name is the host name, which `cloudbox
// community init` takes).
func community(t *testing.T, bin binaries, boxes []*box, bootstrap string) (addrs map[string][2]string, member map[*box]string) {
	t.Helper()
	founder := boxes[0]
	cli(t, bin, "community", "init", "--state-dir", founder.dir, "--name", "meshnet", "--range", "198.18.0.0/15")
	for _, b := range boxes[1:] {
		b.token = cli(t, bin, "invite", "--state-dir", founder.dir, "--name", b.name, "--bootstrap", bootstrap)
	}
	for _, b := range boxes {
		args := slices.Clone(b.args)
		if b.token != "" {
			args = append(args, "--join", b.token)
		}
		b.start(t, args...)
	}
	netnstest.WaitFor(t, 90*time.Second, func() string {
		for _, b := range boxes {
			ps, err := b.peers()
			if err != nil {
				return err.Error()
			}
			if len(ps) != len(boxes) {
				return fmt.Sprintf("%s lists %d members: %v", b.name, len(ps), names(ps))
			}
		}
		return ""
	})
	addrs = make(map[string][2]string)
	member = make(map[*box]string)
	for _, b := range boxes {
		s := b.self(t)
		addrs[b.name] = [2]string{s.IPv4, s.IPv6}
		member[b] = s.Name
	}
	return addrs, member
}

// waitPath waits, at most timeout, until from's confirmed path to the
// member named to satisfies ok (which describes what is wrong, or returns
// ""), and returns it.
func waitPath(t *testing.T, from *box, to string, timeout time.Duration, ok func(peer) string) peer {
	t.Helper()
	var p peer
	netnstest.WaitFor(t, timeout, func() string {
		var err error
		if p, err = from.peerNamed(to); err != nil {
			return err.Error()
		}
		if strings.Contains(p.Endpoint, "unconfirmed") {
			return fmt.Sprintf("%s's path to %s is %q", from.name, to, p.Endpoint)
		}
		if msg := ok(p); msg != "" {
			return fmt.Sprintf("%s's path to %s is %q: %s", from.name, to, p.Endpoint, msg)
		}
		return ""
	})
	return p
}

// directTo wants a direct path to an address with the prefix.
func directTo(prefix string) func(peer) string {
	return func(p peer) string {
		if !p.Direct || !strings.HasPrefix(p.Endpoint, "direct "+prefix) {
			return "want direct to " + prefix + "*"
		}
		return ""
	}
}

// relayedVia wants a relayed path through one of the named members.
func relayedVia(names ...string) func(peer) string {
	return func(p peer) string {
		if p.Direct || !slices.Contains(names, p.Via) {
			return fmt.Sprintf("want relayed via one of %v", names)
		}
		return ""
	}
}

// metric returns the value of an unlabelled metric of b.
func metric(t *testing.T, b *box, name string) float64 {
	t.Helper()
	for line := range strings.Lines(b.getText(t, "/metrics")) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s of %s: %v", name, b.name, err)
			}
			return f
		}
	}
	t.Fatalf("%s has no metric %s", b.name, name)
	return 0
}
