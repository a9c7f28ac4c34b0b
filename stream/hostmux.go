package stream

import (
	"net"

	"github.com/pion/ice/v4"
)

// hostMux is the server's ICE UDP mux. It offers, at every gathering, the
// addresses the box has then: interfaces come and go (the overlay's cb0
// appears after the server starts), whereas pion's own mux lists the
// interfaces it found when it was created.
type hostMux struct {
	*ice.UDPMuxDefault
	conn     net.PacketConn
	loopback bool
	filter   func(net.IP) bool // nil keeps every address
}

func newHostMux(conn net.PacketConn, loopback bool, filter func(net.IP) bool) *hostMux {
	return &hostMux{UDPMuxDefault: ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: conn}), conn: conn,
		loopback: loopback, filter: filter}
}

// GetListenAddresses implements ice.UDPMux: the socket's address, or when
// it listens on every address, each unicast address of the interfaces that
// are up (not IPv6 link-local ones, RFC 8445 §5.1.1.1).
func (m *hostMux) GetListenAddresses() []net.Addr {
	la, ok := m.conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return []net.Addr{m.conn.LocalAddr()}
	}
	if !la.IP.IsUnspecified() {
		return []net.Addr{la}
	}
	v4only := la.IP.To4() != nil
	ifs, err := net.Interfaces()
	if err != nil {
		return []net.Addr{la}
	}
	var out []net.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || (ifc.Flags&net.FlagLoopback != 0 && !m.loopback) {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip := ipn.IP
			switch {
			case ip.IsLinkLocalUnicast() && ip.To4() == nil, ip.IsMulticast(), ip.IsUnspecified():
				continue
			case ip.IsLoopback() && !m.loopback:
				continue
			case v4only && ip.To4() == nil:
				continue
			case m.filter != nil && !m.filter(ip):
				continue
			}
			out = append(out, &net.UDPAddr{IP: ip, Port: la.Port})
		}
	}
	return out
}
