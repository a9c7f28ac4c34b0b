package overlay

// The namespace tests run every box as a separate process: the test binary
// re-executes itself inside `ip netns exec NS` with nodeEnv pointing at a JSON
// config, and TestMain turns it into a node that runs an Engine (or plain
// wireguard-go, for comparison) and answers status requests on a Unix socket.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/testenv"
	"github.com/cloudbox/cloudbox/overlay/netcfg"
	"github.com/cloudbox/cloudbox/overlay/transport"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

const (
	nodeEnv  = "CLOUDBOX_OVERLAY_TEST_NODE"
	sprayEnv = "CLOUDBOX_OVERLAY_TEST_SPRAY"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(nodeEnv); path != "" {
		if err := runNode(path); err != nil {
			fmt.Fprintln(os.Stderr, "node:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if path := os.Getenv(sprayEnv); path != "" {
		if err := runSpray(path); err != nil {
			fmt.Fprintln(os.Stderr, "spray:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// sprayConfig is a list of datagrams for runSpray to send.
type sprayConfig struct {
	Target  netip.AddrPort
	Packets [][]byte
}

// runSpray sends datagrams from its namespace, like an attacker would.
func runSpray(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg sprayConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return err
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(cfg.Target))
	if err != nil {
		return err
	}
	defer c.Close()
	for _, p := range cfg.Packets {
		if _, err := c.Write(p); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// spray sends packets to target from inside ns.
func spray(t *testing.T, ns *netnstest.NS, target netip.AddrPort, packets [][]byte) {
	t.Helper()
	b, err := json.Marshal(sprayConfig{Target: target, Packets: packets})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "spray.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := ns.Command(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), sprayEnv+"="+path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("spraying from %s: %v\n%s", ns.Name, err, out)
	}
}

// udpPayloads returns the payloads of the IPv4 UDP datagrams from src to
// port in a pcap file of an Ethernet interface.
func udpPayloads(t *testing.T, pcap []byte, src netip.Addr, port uint16) [][]byte {
	t.Helper()
	if len(pcap) < 24 || binary.LittleEndian.Uint32(pcap) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(pcap[20:]) != 1 {
		t.Fatalf("not a little-endian Ethernet pcap file (%d bytes)", len(pcap))
	}
	var out [][]byte
	for rest := pcap[24:]; len(rest) >= 16; {
		n := int(binary.LittleEndian.Uint32(rest[8:]))
		if len(rest) < 16+n {
			break
		}
		frame := rest[16 : 16+n]
		rest = rest[16+n:]
		if len(frame) < 14+20+8 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 {
			continue
		}
		ip := frame[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 17 || len(ip) < ihl+8 || netip.AddrFrom4([4]byte(ip[12:16])) != src {
			continue
		}
		udp := ip[ihl:]
		if binary.BigEndian.Uint16(udp[2:]) != port {
			continue
		}
		out = append(out, bytes.Clone(udp[8:]))
	}
	return out
}

// communityV4 is the overlay IPv4 range of the tests (benchmark range).
var communityV4 = netip.MustParsePrefix("198.18.0.0/15")

// nodeConfig is what a node process runs.
type nodeConfig struct {
	Name       string
	PrivateKey [32]byte
	ListenPort uint16
	IPv4       netip.Prefix
	Peers      []Peer
	Socket     string
	// Plain runs wireguard-go with its standard Bind instead of an Engine,
	// the baseline for throughput. Peers need exactly one endpoint.
	Plain bool
	// LANInterval is Config.LANInterval.
	LANInterval time.Duration
}

// nodeStatus is a node's answer to GET /status.
type nodeStatus struct {
	Peers []PeerStatus
	Stats Stats
	IPv6  netip.Prefix
}

// runNode is the node process.
func runNode(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg nodeConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", cfg.Name)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if cfg.Plain {
		return runPlainWireGuard(ctx, cfg, log)
	}
	e, err := New(Config{
		Logger:      log,
		PrivateKey:  cfg.PrivateKey,
		ListenPort:  cfg.ListenPort,
		IPv4:        cfg.IPv4,
		LANInterval: cfg.LANInterval,
	})
	if err != nil {
		return err
	}
	if err := e.SetPeers(cfg.Peers); err != nil {
		return err
	}
	ln, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(nodeStatus{Peers: e.Peers(), Stats: e.Stats(), IPv6: e.IPv6()})
	})
	srv := &http.Server{Handler: mux}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ln) })
	err = e.Run(ctx)
	srv.Close()
	wg.Wait()
	return err
}

// runPlainWireGuard runs stock wireguard-go: same TUN, same MTU, standard
// Bind, roaming on, no disco, no relay.
func runPlainWireGuard(ctx context.Context, cfg nodeConfig, log *slog.Logger) error {
	tdev, err := tun.CreateTUN(DefaultInterfaceName, DefaultMTU)
	if err != nil {
		return err
	}
	dev := device.NewDevice(tdev, conn.NewStdNetBind(), device.NewLogger(device.LogLevelError, cfg.Name+": "))
	defer dev.Close()
	conf := deviceConfig(cfg.PrivateKey, cfg.ListenPort)
	for _, p := range cfg.Peers {
		conf += fmt.Sprintf("public_key=%s\nendpoint=%s\nallowed_ip=%s/32\n", transport.Key(p.NodeKey), p.Endpoints[0], p.IPv4)
	}
	if err := dev.IpcSet(conf); err != nil {
		return err
	}
	if err := dev.Up(); err != nil {
		return err
	}
	if err := netcfg.Apply(ctx, netcfg.Config{Name: DefaultInterfaceName, MTU: DefaultMTU, Addrs: []netip.Prefix{cfg.IPv4}}); err != nil {
		return err
	}
	ln, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(nodeStatus{})
	})}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ln) })
	log.Info("plain wireguard-go up")
	<-ctx.Done()
	srv.Close()
	wg.Wait()
	return nil
}

// testNode is a node process seen from the test.
type testNode struct {
	name   string
	ns     *netnstest.NS
	cfg    nodeConfig
	public [32]byte
	ipv4   netip.Addr
	ipv6   netip.Addr // known once the node answered
	cmd    *exec.Cmd
	logf   string
	client *http.Client
	exited chan struct{}
	stop   func()
}

// newTestNode prepares a node with a fresh key; start runs it.
func newTestNode(t *testing.T, ns *netnstest.NS, name string, ipv4 string) *testNode {
	var priv [32]byte
	rand.Read(priv[:])
	n := &testNode{
		name:   name,
		ns:     ns,
		public: transport.PublicKey(priv),
		ipv4:   netip.MustParseAddr(ipv4),
	}
	n.cfg = nodeConfig{
		Name:       name,
		PrivateKey: priv,
		ListenPort: DefaultListenPort,
		IPv4:       netip.PrefixFrom(n.ipv4, communityV4.Bits()),
	}
	return n
}

// peer describes n as a peer reachable at the given underlay addresses.
func (n *testNode) peer(endpoints ...string) Peer {
	p := Peer{NodeKey: n.public, Name: n.name, IPv4: n.ipv4}
	for _, e := range endpoints {
		p.Endpoints = append(p.Endpoints, netip.AddrPortFrom(netip.MustParseAddr(e), DefaultListenPort))
	}
	return p
}

// start runs the node process and waits until it answers.
func (n *testNode) start(t *testing.T, peers ...Peer) {
	t.Helper()
	dir := t.TempDir()
	n.cfg.Peers = peers
	n.cfg.Socket = filepath.Join(dir, "node.sock")
	b, err := json.Marshal(n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "node.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	n.logf = filepath.Join(dir, "node.log")
	logFile, err := os.Create(n.logf)
	if err != nil {
		t.Fatal(err)
	}
	n.cmd = n.ns.Command(context.Background(), os.Args[0])
	n.cmd.Env = append(os.Environ(), nodeEnv+"="+path)
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	// The node dies with the test binary, whatever happens.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("starting node %s: %v", n.name, err)
	}
	n.exited = make(chan struct{})
	var exitErr error
	go func() {
		exitErr = n.cmd.Wait()
		logFile.Close()
		close(n.exited)
	}()
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			n.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-n.exited:
				// Run must shut down cleanly on SIGTERM.
				if exitErr != nil {
					t.Errorf("node %s exited with %v", n.name, exitErr)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("node %s did not stop within 10s of SIGTERM; killing it", n.name)
				n.cmd.Process.Kill()
				<-n.exited
			}
		})
	}
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			b, _ := os.ReadFile(n.logf)
			t.Logf("log of node %s:\n%s", n.name, b)
		}
	})
	n.client = &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", n.cfg.Socket)
		}},
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := n.tryStatus()
		if err == nil {
			n.ipv6 = st.IPv6.Addr()
			return
		}
		select {
		case <-n.exited:
			t.Fatalf("node %s exited during startup", n.name)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s did not answer within 30s: %v", n.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (n *testNode) tryStatus() (nodeStatus, error) {
	var st nodeStatus
	resp, err := n.client.Get("http://node/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (n *testNode) status(t *testing.T) nodeStatus {
	t.Helper()
	st, err := n.tryStatus()
	if err != nil {
		t.Fatalf("status of node %s: %v", n.name, err)
	}
	return st
}

// peerStatus returns n's status of peer p.
func (n *testNode) peerStatus(t *testing.T, p *testNode) PeerStatus {
	t.Helper()
	for _, ps := range n.status(t).Peers {
		if ps.NodeKey == p.public {
			return ps
		}
	}
	t.Fatalf("node %s has no peer %s", n.name, p.name)
	return PeerStatus{}
}

// waitPing waits until one ping from ns to addr gets an answer.
func waitPing(t *testing.T, ns *netnstest.NS, addr netip.Addr, timeout time.Duration) time.Duration {
	t.Helper()
	testenv.RequireCommand(t, "ping", "iputils-ping")
	return netnstest.WaitFor(t, timeout, func() string {
		out, err := ns.Try("ping", "-n", "-c", "1", "-W", "1", addr.String())
		if err != nil {
			return fmt.Sprintf("ping %s from %s fails: %v\n%s", addr, ns.Name, err, out)
		}
		return ""
	})
}

var rttRE = regexp.MustCompile(`= ([0-9.]+)/([0-9.]+)/([0-9.]+)/`)

// pingRTT sends count pings that must all be answered and returns the
// average round-trip time. pattern, when not empty, fills the payload.
func pingRTT(t *testing.T, ns *netnstest.NS, addr netip.Addr, count int, pattern string) time.Duration {
	t.Helper()
	args := []string{"ping", "-n", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "2"}
	if pattern != "" {
		args = append(args, "-p", pattern)
	}
	out, err := ns.Try(append(args, addr.String())...)
	if err != nil {
		t.Fatalf("ping %s from %s: %v\n%s", addr, ns.Name, err, out)
	}
	if !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping %s from %s lost packets:\n%s", addr, ns.Name, out)
	}
	m := rttRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no RTT in ping output:\n%s", out)
	}
	ms, _ := strconv.ParseFloat(m[2], 64)
	return time.Duration(ms * float64(time.Millisecond))
}

// capture records UDP on an interface of ns with tcpdump until stop is
// called, and returns the pcap file's bytes.
func capture(t *testing.T, ns *netnstest.NS, ifc string) (stop func() []byte) {
	t.Helper()
	testenv.RequireCommand(t, "tcpdump", "tcpdump")
	path := filepath.Join(t.TempDir(), ifc+".pcap")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd := ns.Command(ctx, "tcpdump", "-i", ifc, "-n", "-U", "-s", "0", "-w", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		var seen []byte
		for {
			n, err := stderr.Read(buf)
			seen = append(seen, buf[:n]...)
			if bytes.Contains(seen, []byte("listening on")) {
				close(listening)
				io.Copy(io.Discard, stderr)
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var once sync.Once
	var data []byte
	stop = func() []byte {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			cancel()
			data, _ = os.ReadFile(path)
		})
		return data
	}
	t.Cleanup(func() { stop() })
	select {
	case <-listening:
	case <-time.After(10 * time.Second):
		t.Fatalf("tcpdump on %s in %s did not start within 10s", ifc, ns.Name)
	}
	return stop
}

// pattern is a recognisable ping payload (ping -p takes up to 16 bytes).
const pattern = "c10dbeefdeadbeefc0ffee0123456789"

func patternBytes() []byte {
	b, _ := hex.DecodeString(pattern)
	return b
}
