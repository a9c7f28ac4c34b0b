package voip

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// maxMedia bounds the m= lines of one SDP the relay anchors.
const maxMedia = 4

// sdpMedia is one m= line of a session description (RFC 8866 §5.14) with
// the connection address that applies to it (§5.7: media-level c= over
// session-level).
type sdpMedia struct {
	Kind    string // "audio", "video", ...
	Addr    netip.Addr
	Port    uint16 // 0: stream disabled
	Proto   string
	Formats []string
}

// parseSDP reads the media streams of a session description. It is lenient
// about attributes it does not use and strict about the lines it does.
func parseSDP(body []byte) ([]sdpMedia, error) {
	var media []sdpMedia
	var sessAddr netip.Addr
	haveV := false
	for line := range bytes.Lines(body) {
		l := strings.TrimRight(string(line), "\r\n")
		if l == "" {
			continue
		}
		if len(l) < 2 || l[1] != '=' {
			return nil, fmt.Errorf("%w: sdp line %q", ErrMalformed, truncate(l, 40))
		}
		switch l[0] {
		case 'v':
			haveV = true
		case 'c':
			a, err := parseConnection(l[2:])
			if err != nil {
				return nil, err
			}
			if len(media) == 0 {
				sessAddr = a
			} else {
				media[len(media)-1].Addr = a
			}
		case 'm':
			if len(media) == maxMedia {
				return nil, fmt.Errorf("%w: more than %d media streams", ErrMalformed, maxMedia)
			}
			f := strings.Fields(l[2:])
			if len(f) < 4 {
				return nil, fmt.Errorf("%w: sdp media line %q", ErrMalformed, truncate(l, 40))
			}
			portStr, _, _ := strings.Cut(f[1], "/")
			port, err := strconv.ParseUint(portStr, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("%w: sdp media port %q", ErrMalformed, truncate(f[1], 10))
			}
			media = append(media, sdpMedia{Kind: f[0], Addr: sessAddr, Port: uint16(port), Proto: f[2], Formats: f[3:]})
		}
	}
	if !haveV {
		return nil, fmt.Errorf("%w: sdp without v= line", ErrMalformed)
	}
	return media, nil
}

// parseConnection reads "IN IP4 192.0.2.1" (a multicast TTL suffix is cut).
func parseConnection(v string) (netip.Addr, error) {
	f := strings.Fields(v)
	if len(f) < 3 || f[0] != "IN" || (f[1] != "IP4" && f[1] != "IP6") {
		return netip.Addr{}, fmt.Errorf("%w: sdp connection %q", ErrMalformed, truncate(v, 40))
	}
	host, _, _ := strings.Cut(f[2], "/")
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: sdp connection address %q", ErrMalformed, truncate(host, 40))
	}
	return a, nil
}

// rewriteSDP points every media stream of body at addr and the given ports
// (ports[i] for the i-th m= line; streams with port 0 stay disabled) and
// drops what would let the far end bypass the relay: ICE candidates and
// explicit RTCP addresses. The origin's address is replaced as well.
func rewriteSDP(body []byte, addr netip.Addr, ports []uint16) []byte {
	ipv := "IP4"
	if addr.Is6() && !addr.Is4In6() {
		ipv = "IP6"
	}
	addr = addr.Unmap()
	conn := "c=IN " + ipv + " " + addr.String()
	var out bytes.Buffer
	out.Grow(len(body) + 64)
	mi := -1
	sessionC := false
	for line := range bytes.Lines(body) {
		l := strings.TrimRight(string(line), "\r\n")
		if l == "" {
			continue
		}
		switch {
		case strings.HasPrefix(l, "o="):
			if f := strings.Fields(l); len(f) == 6 {
				f[4], f[5] = ipv, addr.String()
				l = strings.Join(f, " ")
			}
		case strings.HasPrefix(l, "c="):
			if mi < 0 {
				sessionC = true
			} else if !sessionC {
				continue // one was written after the m= line
			}
			l = conn
		case strings.HasPrefix(l, "m="):
			mi++
			f := strings.Fields(l[2:])
			if len(f) >= 2 && mi < len(ports) {
				portStr, count, ok := strings.Cut(f[1], "/")
				if p, err := strconv.ParseUint(portStr, 10, 16); err == nil && p != 0 {
					f[1] = strconv.Itoa(int(ports[mi]))
					if ok {
						f[1] += "/" + count
					}
					l = "m=" + strings.Join(f, " ")
				}
			}
			if !sessionC {
				// no session-level c=: each stream needs its own
				out.WriteString(l)
				out.WriteString("\r\n")
				l = conn
			}
		case strings.HasPrefix(l, "a=candidate:"), strings.HasPrefix(l, "a=rtcp:"),
			strings.HasPrefix(l, "a=ice-"), l == "a=end-of-candidates", strings.HasPrefix(l, "a=remote-candidates"):
			continue
		}
		out.WriteString(l)
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
