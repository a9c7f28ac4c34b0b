package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// PAC describes a proxy auto-config file (the FindProxyForURL function
// browsers evaluate, as Netscape specified it and WPAD serves it).
type PAC struct {
	// Gateways are "host:port" of HTTP proxies, nearest (or healthiest)
	// first; the browser falls back to the next when one does not answer.
	Gateways []string
	// DirectDomains are DNS suffixes reached without a proxy, e.g. the
	// community zone "cb.home.arpa"; names without dots always are.
	DirectDomains []string
	// DirectNets are address ranges reached without a proxy when the URL's
	// host is an address literal: the community's ranges, the LAN.
	DirectNets []netip.Prefix
	// NoDirectFallback leaves "DIRECT" off the end of the gateway list, for
	// networks where there is no way out but the gateways.
	NoDirectFallback bool
}

// RenderPAC returns the PAC file for c. Every value is validated, so the
// script can only contain what c means.
func RenderPAC(c PAC) ([]byte, error) {
	var b strings.Builder
	b.WriteString("// cloudbox proxy auto-config: community destinations direct, the rest\n// through the nearest gateway, then the next ones.\nfunction FindProxyForURL(url, host) {\n")
	b.WriteString("  host = host.toLowerCase();\n  if (isPlainHostName(host)) return \"DIRECT\";\n")
	for _, d := range c.DirectDomains {
		d = strings.ToLower(strings.Trim(d, "."))
		if !validHostName([]byte(d)) {
			return nil, fmt.Errorf("pac direct domain %q: not a DNS name", d)
		}
		fmt.Fprintf(&b, "  if (host == %q || dnsDomainIs(host, %q)) return \"DIRECT\";\n", d, "."+d)
	}
	if len(c.DirectNets) > 0 {
		b.WriteString("  var v4 = /^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$/.test(host);\n")
		b.WriteString("  var v6 = host.indexOf(\":\") >= 0;\n")
		b.WriteString("  if (v6 && host.charAt(0) == \"[\") host = host.substring(1, host.length - 1);\n")
	}
	for _, n := range c.DirectNets {
		if !n.IsValid() {
			return nil, fmt.Errorf("pac direct net %v: invalid prefix", n)
		}
		n = n.Masked()
		if n.Addr().Is4() {
			mask := net.CIDRMask(n.Bits(), 32)
			fmt.Fprintf(&b, "  if (v4 && isInNet(host, %q, %q)) return \"DIRECT\";\n", n.Addr().String(), net.IP(mask).String())
		} else {
			// isInNetEx is the IPv6-capable extension (Microsoft's, in
			// Chromium and Firefox); older engines skip the check.
			fmt.Fprintf(&b, "  if (v6 && typeof isInNetEx == \"function\" && isInNetEx(host, %q)) return \"DIRECT\";\n", n.String())
		}
	}
	var route []string
	for _, g := range c.Gateways {
		host, port, err := net.SplitHostPort(g)
		if err != nil {
			return nil, fmt.Errorf("pac gateway %q: %w", g, err)
		}
		if pn, err := strconv.ParseUint(port, 10, 16); err != nil || pn == 0 {
			return nil, fmt.Errorf("pac gateway %q: bad port", g)
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			g = netip.AddrPortFrom(ip, 0).Addr().String()
			if ip.Is6() {
				g = "[" + g + "]"
			}
			g += ":" + port
		} else if !validHostName([]byte(host)) {
			return nil, fmt.Errorf("pac gateway %q: bad host", g)
		}
		route = append(route, "PROXY "+g)
	}
	if !c.NoDirectFallback || len(route) == 0 {
		route = append(route, "DIRECT")
	}
	fmt.Fprintf(&b, "  return %q;\n}\n", strings.Join(route, "; "))
	return []byte(b.String()), nil
}
