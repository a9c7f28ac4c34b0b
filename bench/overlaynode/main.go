// Command overlaynode runs one overlay.Engine as the "ours" row of the shared
// overlay peer benchmark (overlay-peers.sh, through its OVERLAY_CMD_A and
// OVERLAY_CMD_B hooks; see bench/overlay.sh). It is a tool for measuring,
// not a daemon: one peer, given on the command line, until SIGTERM.
//
//	overlaynode keygen DIR A B        # DIR/A.key, DIR/A.pub, DIR/B.key, DIR/B.pub (hex)
//	overlaynode run -key DIR/A.key -peer-pub DIR/B.pub -if ovl-a \
//	    -addr 198.18.0.1/24 -peer-addr 198.18.0.2 -endpoint 192.0.2.2:51820
//
// The Engine creates the TUN interface and gives it the address itself, as
// it does on a box. With -rss-file, the process's peak RSS (KiB) is written
// there when it stops. With -peers FILE (lines "PUBFILE IPV4 ADDR:PORT") it
// has many peers instead of one.
//
//	overlaynode swarm -keys DIR -n 50 -port 51821 -addr 198.18.1.1 \
//	    -peer-pub DIR/M.pub -peer-addr 198.18.0.1 -endpoint 192.0.2.1:51820
//
// runs n Engines in one process, the peers of one "run -peers" node: Engine
// i has key DIR/P<i>.key, UDP port port+i, interface sw<i> and overlay
// address addr+i/32 (routing replies to the right interface is left to the
// caller: one ip rule per address).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudbox/cloudbox/overlay"
	"github.com/cloudbox/cloudbox/overlay/transport"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "keygen":
		err = keygen(os.Args[2:])
	case "run":
		err = run(os.Args[2:])
	case "swarm":
		err = swarm(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "overlaynode:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: overlaynode keygen DIR NAME... | overlaynode run -key FILE -peer-pub FILE -addr PREFIX -peer-addr ADDR -endpoint ADDR:PORT [-if NAME] [-port N]")
	os.Exit(2)
}

// keygen writes a fresh private key and its public key for each name.
func keygen(args []string) error {
	if len(args) < 2 {
		return errors.New("keygen needs DIR and at least one NAME")
	}
	dir := args[0]
	for _, name := range args[1:] {
		var priv [32]byte
		if _, err := rand.Read(priv[:]); err != nil {
			return err
		}
		pub := transport.PublicKey(priv)
		if err := os.WriteFile(filepath.Join(dir, name+".key"), []byte(hex.EncodeToString(priv[:])+"\n"), 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".pub"), []byte(hex.EncodeToString(pub[:])+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func readKey(path string) ([32]byte, error) {
	var k [32]byte
	b, err := os.ReadFile(path)
	if err != nil {
		return k, err
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != 32 {
		return k, fmt.Errorf("%s: not a hex 32-byte key", path)
	}
	copy(k[:], raw)
	return k, nil
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	keyFile := fs.String("key", "", "file with this node's private key (hex)")
	peerPubFile := fs.String("peer-pub", "", "file with the peer's public key (hex)")
	peersFile := fs.String("peers", "", "file of peers, one a line: PUBFILE IPV4 ADDR:PORT (instead of -peer-pub, -peer-addr, -endpoint)")
	gogc := fs.Int("gogc", 0, "debug.SetGCPercent (0: leave the default)")
	ifName := fs.String("if", overlay.DefaultInterfaceName, "TUN interface name")
	port := fs.Uint("port", overlay.DefaultListenPort, "underlay UDP port")
	addr := fs.String("addr", "", "this node's overlay IPv4 with prefix length, e.g. 198.18.0.1/24")
	peerAddr := fs.String("peer-addr", "", "the peer's overlay IPv4")
	endpoint := fs.String("endpoint", "", "the peer's underlay address:port")
	mtu := fs.Int("mtu", 0, "interface MTU (0: overlay.DefaultMTU)")
	inflight := fs.Int("inflight", 0, "Config.Inflight (0: default)")
	batch := fs.Int("batch", 0, "Config.BatchSize (0: default)")
	rssFile := fs.String("rss-file", "", "write peak RSS in KiB here on exit")
	verbose := fs.Bool("v", false, "debug logging")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060)")
	fs.Parse(args)

	priv, err := readKey(*keyFile)
	if err != nil {
		return err
	}
	v4, err := netip.ParsePrefix(*addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	var peers []overlay.Peer
	if *peersFile != "" {
		peers, err = readPeers(*peersFile)
	} else {
		var p overlay.Peer
		p, err = parsePeer(*peerPubFile, *peerAddr, *endpoint)
		peers = []overlay.Peer{p}
	}
	if err != nil {
		return err
	}
	if *gogc != 0 {
		debug.SetGCPercent(*gogc)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	e, err := overlay.New(overlay.Config{
		Logger:        logger,
		PrivateKey:    priv,
		ListenPort:    uint16(*port),
		InterfaceName: *ifName,
		IPv4:          v4,
		MTU:           *mtu,
		Inflight:      *inflight,
		BatchSize:     *batch,
	})
	if err != nil {
		return err
	}
	if err := e.SetPeers(peers); err != nil {
		return err
	}
	if *pprofAddr != "" {
		ln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			return fmt.Errorf("-pprof: %w", err)
		}
		go http.Serve(ln, nil)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = e.Run(ctx)
	if *rssFile != "" {
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
			os.WriteFile(*rssFile, []byte(fmt.Sprintf("%d\n", ru.Maxrss)), 0o644)
		}
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// parsePeer reads a peer's key file and parses its addresses.
func parsePeer(pubFile, addr, endpoint string) (overlay.Peer, error) {
	pub, err := readKey(pubFile)
	if err != nil {
		return overlay.Peer{}, err
	}
	v4, err := netip.ParseAddr(addr)
	if err != nil {
		return overlay.Peer{}, fmt.Errorf("peer address: %w", err)
	}
	ep, err := netip.ParseAddrPort(endpoint)
	if err != nil {
		return overlay.Peer{}, fmt.Errorf("peer endpoint: %w", err)
	}
	return overlay.Peer{NodeKey: pub, Name: filepath.Base(pubFile), IPv4: v4, Endpoints: []netip.AddrPort{ep}}, nil
}

// readPeers reads a -peers file.
func readPeers(path string) ([]overlay.Peer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var peers []overlay.Peer
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("%s:%d: want PUBFILE IPV4 ADDR:PORT", path, i+1)
		}
		p, err := parsePeer(f[0], f[1], f[2])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		peers = append(peers, p)
	}
	return peers, nil
}

// swarm runs n Engines, each with the one peer given, until SIGTERM.
func swarm(args []string) error {
	fs := flag.NewFlagSet("swarm", flag.ExitOnError)
	keys := fs.String("keys", "", "directory with P<i>.key")
	n := fs.Int("n", 50, "number of Engines")
	port := fs.Int("port", overlay.DefaultListenPort+1, "UDP port of Engine 0; Engine i has port+i")
	addr := fs.String("addr", "198.18.1.1", "overlay IPv4 of Engine 0; Engine i has addr+i (/32)")
	peerPubFile := fs.String("peer-pub", "", "file with the peer's public key (hex)")
	peerAddr := fs.String("peer-addr", "", "the peer's overlay IPv4")
	endpoint := fs.String("endpoint", "", "the peer's underlay address:port")
	fs.Parse(args)

	peer, err := parsePeer(*peerPubFile, *peerAddr, *endpoint)
	if err != nil {
		return err
	}
	a, err := netip.ParseAddr(*addr)
	if err != nil || !a.Is4() {
		return fmt.Errorf("-addr %q: not an IPv4 address", *addr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var wg sync.WaitGroup
	errs := make(chan error, *n)
	for i := range *n {
		priv, err := readKey(filepath.Join(*keys, "P"+strconv.Itoa(i)+".key"))
		if err != nil {
			return err
		}
		e, err := overlay.New(overlay.Config{
			Logger:        logger.With("engine", i),
			PrivateKey:    priv,
			ListenPort:    uint16(*port + i),
			InterfaceName: "sw" + strconv.Itoa(i),
			IPv4:          netip.PrefixFrom(a, 32),
		})
		if err != nil {
			return err
		}
		if err := e.SetPeers([]overlay.Peer{peer}); err != nil {
			return err
		}
		wg.Go(func() {
			if err := e.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("engine %d: %w", i, err)
				stop()
			}
		})
		// Start them one by one: each TUN listens to the namespace's link
		// events, and 50 appearing at once overflow those sockets.
		waitAddr("sw"+strconv.Itoa(i), 10*time.Second)
		a = a.Next()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// waitAddr waits until interface name has an address, or for at most d.
func waitAddr(name string, d time.Duration) {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ifc, err := net.InterfaceByName(name); err == nil {
			if addrs, err := ifc.Addrs(); err == nil && len(addrs) > 0 {
				return
			}
		}
	}
}
