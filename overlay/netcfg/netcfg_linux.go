package netcfg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Apply brings the interface to the state in cfg: MTU, up, addresses,
// routes. ctx bounds each netlink exchange.
func Apply(ctx context.Context, cfg Config) error {
	if cfg.Name == "" {
		return errors.New("configuring interface: no name")
	}
	c, err := rtnetlink.Dial(&netlink.Config{NetNS: cfg.NetNS})
	if err != nil {
		return fmt.Errorf("configuring %s: dialing rtnetlink: %w", cfg.Name, err)
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		if err := c.SetReadDeadline(d); err != nil {
			return fmt.Errorf("configuring %s: %w", cfg.Name, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("configuring %s: %w", cfg.Name, err)
	}
	idx, err := linkIndex(c, cfg.Name)
	if err != nil {
		return err
	}
	link := &rtnetlink.LinkMessage{
		Family:     unix.AF_UNSPEC,
		Index:      idx,
		Flags:      unix.IFF_UP,
		Change:     unix.IFF_UP,
		Attributes: &rtnetlink.LinkAttributes{MTU: uint32(cfg.MTU)},
	}
	if err := c.Link.Set(link); err != nil {
		return fmt.Errorf("configuring %s: setting MTU %d and up: %w", cfg.Name, cfg.MTU, err)
	}
	for _, p := range cfg.Addrs {
		if err := addAddr(c, idx, p); err != nil {
			return fmt.Errorf("configuring %s: adding address %s: %w", cfg.Name, p, err)
		}
	}
	for _, p := range cfg.Routes {
		if err := replaceRoute(c, idx, p.Masked()); err != nil {
			return fmt.Errorf("configuring %s: adding route %s: %w", cfg.Name, p, err)
		}
	}
	return nil
}

func linkIndex(c *rtnetlink.Conn, name string) (uint32, error) {
	links, err := c.Link.List()
	if err != nil {
		return 0, fmt.Errorf("configuring %s: listing links: %w", name, err)
	}
	for _, l := range links {
		if l.Attributes != nil && l.Attributes.Name == name {
			return l.Index, nil
		}
	}
	return 0, fmt.Errorf("configuring %s: %w", name, ErrNoInterface)
}

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func addAddr(c *rtnetlink.Conn, idx uint32, p netip.Prefix) error {
	a := p.Addr()
	attrs := &rtnetlink.AddressAttributes{Address: net.IP(a.AsSlice())}
	if a.Is4() {
		attrs.Local = attrs.Address
	} else {
		attrs.Flags = unix.IFA_F_NODAD
	}
	err := c.Address.New(&rtnetlink.AddressMessage{
		Family:       family(a),
		PrefixLength: uint8(p.Bits()),
		Scope:        unix.RT_SCOPE_UNIVERSE,
		Index:        idx,
		Attributes:   attrs,
	})
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

func replaceRoute(c *rtnetlink.Conn, idx uint32, p netip.Prefix) error {
	return c.Route.Replace(&rtnetlink.RouteMessage{
		Family:    family(p.Addr()),
		DstLength: uint8(p.Bits()),
		Table:     unix.RT_TABLE_MAIN,
		Protocol:  unix.RTPROT_STATIC,
		Scope:     unix.RT_SCOPE_LINK,
		Type:      unix.RTN_UNICAST,
		Attributes: rtnetlink.RouteAttributes{
			Dst:      net.IP(p.Addr().AsSlice()),
			OutIface: idx,
		},
	})
}
