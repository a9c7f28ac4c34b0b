package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/appliance"
	"github.com/cloudbox/cloudbox/appliance/state"
	"github.com/cloudbox/cloudbox/overlay/community"
	"github.com/cloudbox/cloudbox/overlay/membership"
)

// overlayDir is where a box keeps its membership, inside its state dir.
func overlayDir(stateDir string) string { return filepath.Join(stateDir, appliance.OverlayDir) }

// runCommunity dispatches `cloudbox community <sub>`.
func runCommunity(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "init" {
		return errors.New("usage: cloudbox community init --state-dir DIR --name NAME [--range PREFIX]")
	}
	fs := flag.NewFlagSet("community init", flag.ContinueOnError)
	stateDir := fs.String("state-dir", state.DefaultDir, "state directory of the founding box (cloudboxd --state-dir)")
	name := fs.String("name", "", "community name")
	rng := fs.String("range", membership.DefaultIPv4Prefix.String(), "IPv4 range of the overlay")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("no community name given: pass --name")
	}
	prefix, err := netip.ParsePrefix(*rng)
	if err != nil || !prefix.Addr().Is4() || prefix.Bits() > 30 {
		return fmt.Errorf("invalid --range %q: want an IPv4 prefix of at most /30, like 100.64.0.0/10", *rng)
	}
	node, err := state.Open(ctx, state.Config{Dir: *stateDir})
	if err != nil {
		return err
	}
	store, err := membership.Open(overlayDir(*stateDir))
	if err != nil {
		return err
	}
	var pub [32]byte
	copy(pub[:], node.PrivateKey.PublicKey().Bytes())
	admin, own, err := community.Init(store, *name, prefix, node.Name, pub, time.Now(), nil)
	if err != nil {
		return err
	}
	c := admin.Community()
	fmt.Printf("community %q created (id %s, IPv4 %s, IPv6 %s)\n", c.Name, c.ID(), c.IPv4, c.IPv6())
	fmt.Printf("this box (%s) is its first member at %s and %s; it holds the root key in %s\n",
		node.Name, own.Certificate.IPv4, c.NodeIPv6(pub), overlayDir(*stateDir))
	return nil
}

// endpointList collects repeated --bootstrap flags.
type endpointList []netip.AddrPort

func (l *endpointList) String() string {
	var s []string
	for _, e := range *l {
		s = append(s, e.String())
	}
	return strings.Join(s, ",")
}

func (l *endpointList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		ap, err := netip.ParseAddrPort(strings.TrimSpace(part))
		if err != nil {
			return fmt.Errorf("invalid endpoint %q: want ADDRESS:PORT", part)
		}
		*l = append(*l, ap)
	}
	return nil
}

func runInvite(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("invite", flag.ContinueOnError)
	stateDir := fs.String("state-dir", state.DefaultDir, "state directory of a box holding the community's root key")
	name := fs.String("name", "", "name of the new box (default box-N)")
	expires := fs.Duration("expires", 72*time.Hour, "how long the invitation can be redeemed")
	var bootstrap endpointList
	fs.Var(&bootstrap, "bootstrap", "underlay ADDRESS:PORT of a member the new box can reach (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *expires <= 0 {
		return errors.New("--expires must be positive, like 72h")
	}
	if len(bootstrap) == 0 {
		return errors.New("no bootstrap endpoint given: pass --bootstrap ADDRESS:PORT of a member (its overlay UDP port)")
	}
	store, err := membership.Open(overlayDir(*stateDir))
	if err != nil {
		return err
	}
	admin, err := community.Open(store, nil)
	if err != nil {
		return err
	}
	inv, err := admin.Invite(community.InviteRequest{Name: *name, Expires: time.Now().Add(*expires), Bootstrap: bootstrap})
	if err != nil {
		return err
	}
	fmt.Println(inv.Token())
	return nil
}
