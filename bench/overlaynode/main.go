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
// there when it stops.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

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
	ifName := fs.String("if", overlay.DefaultInterfaceName, "TUN interface name")
	port := fs.Uint("port", overlay.DefaultListenPort, "underlay UDP port")
	addr := fs.String("addr", "", "this node's overlay IPv4 with prefix length, e.g. 198.18.0.1/24")
	peerAddr := fs.String("peer-addr", "", "the peer's overlay IPv4")
	endpoint := fs.String("endpoint", "", "the peer's underlay address:port")
	mtu := fs.Int("mtu", 0, "interface MTU (0: overlay.DefaultMTU)")
	rssFile := fs.String("rss-file", "", "write peak RSS in KiB here on exit")
	verbose := fs.Bool("v", false, "debug logging")
	fs.Parse(args)

	priv, err := readKey(*keyFile)
	if err != nil {
		return err
	}
	peerPub, err := readKey(*peerPubFile)
	if err != nil {
		return err
	}
	v4, err := netip.ParsePrefix(*addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	pv4, err := netip.ParseAddr(*peerAddr)
	if err != nil {
		return fmt.Errorf("-peer-addr: %w", err)
	}
	ep, err := netip.ParseAddrPort(*endpoint)
	if err != nil {
		return fmt.Errorf("-endpoint: %w", err)
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
	})
	if err != nil {
		return err
	}
	if err := e.SetPeers([]overlay.Peer{{NodeKey: peerPub, Name: "peer", IPv4: pv4, Endpoints: []netip.AddrPort{ep}}}); err != nil {
		return err
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
