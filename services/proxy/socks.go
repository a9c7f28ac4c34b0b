package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// SOCKS5 constants (RFC 1928 §3-6, RFC 1929 §2).
const (
	socksVersion      = 5
	socksAuthVersion  = 1
	methodNone        = 0x00
	methodUserPass    = 0x02
	methodUnavailable = 0xff
	cmdConnect        = 0x01
	atypIPv4          = 0x01
	atypDomain        = 0x03
	atypIPv6          = 0x04

	repSucceeded          = 0x00
	repFailure            = 0x01
	repNotAllowed         = 0x02
	repNetUnreachable     = 0x03
	repHostUnreachable    = 0x04
	repConnRefused        = 0x05
	repCmdNotSupported    = 0x07
	repAddrTypeNotSupport = 0x08
)

var errSOCKS = errors.New("proxy: malformed socks5 message")

// socksRequest is a parsed SOCKS5 request (RFC 1928 §4).
type socksRequest struct {
	cmd  byte
	host string // a domain name, or an address in text form
	port uint16
}

// readGreeting reads the version identifier/method selection message
// (RFC 1928 §3) and returns the methods offered, as a set.
func readGreeting(r io.Reader) (methods [256]bool, err error) {
	var b [257]byte
	if _, err := io.ReadFull(r, b[:2]); err != nil {
		return methods, err
	}
	if b[0] != socksVersion || b[1] == 0 {
		return methods, fmt.Errorf("greeting version %d with %d methods: %w", b[0], b[1], errSOCKS)
	}
	n := int(b[1])
	if _, err := io.ReadFull(r, b[:n]); err != nil {
		return methods, err
	}
	for _, m := range b[:n] {
		methods[m] = true
	}
	return methods, nil
}

// readUserPass reads a username/password request (RFC 1929 §2).
func readUserPass(r io.Reader) (name, password string, err error) {
	var b [256]byte
	if _, err := io.ReadFull(r, b[:2]); err != nil {
		return "", "", err
	}
	if b[0] != socksAuthVersion || b[1] == 0 {
		return "", "", fmt.Errorf("username/password version %d: %w", b[0], errSOCKS)
	}
	ulen := int(b[1])
	if _, err := io.ReadFull(r, b[:ulen+1]); err != nil {
		return "", "", err
	}
	name, plen := string(b[:ulen]), int(b[ulen])
	if _, err := io.ReadFull(r, b[:plen]); err != nil {
		return "", "", err
	}
	return name, string(b[:plen]), nil
}

// readRequest reads a request (RFC 1928 §4, addresses §5). A request that
// parses but cannot be served comes back with err == nil and a non-zero
// reply code.
func readRequest(r io.Reader) (req socksRequest, rep byte, err error) {
	var b [256]byte
	if _, err := io.ReadFull(r, b[:4]); err != nil {
		return req, 0, err
	}
	if b[0] != socksVersion || b[2] != 0 {
		return req, 0, fmt.Errorf("request version %d: %w", b[0], errSOCKS)
	}
	req.cmd = b[1]
	switch atyp := b[3]; atyp {
	case atypIPv4, atypIPv6:
		n := 4
		if atyp == atypIPv6 {
			n = 16
		}
		if _, err := io.ReadFull(r, b[:n]); err != nil {
			return req, 0, err
		}
		ip, _ := netip.AddrFromSlice(b[:n])
		req.host = ip.Unmap().String()
	case atypDomain:
		if _, err := io.ReadFull(r, b[:1]); err != nil {
			return req, 0, err
		}
		n := int(b[0])
		if _, err := io.ReadFull(r, b[:n]); err != nil {
			return req, 0, err
		}
		if !validHostName(b[:n]) {
			return req, repHostUnreachable, nil
		}
		req.host = string(b[:n])
	default:
		return req, repAddrTypeNotSupport, nil
	}
	if _, err := io.ReadFull(r, b[:2]); err != nil {
		return req, 0, err
	}
	req.port = uint16(b[0])<<8 | uint16(b[1])
	if req.cmd != cmdConnect {
		return req, repCmdNotSupported, nil
	}
	return req, 0, nil
}

// validHostName accepts 1 to 253 bytes of letters, digits, '-', '_' and
// '.': a DNS name as clients send it (IDNs in their ASCII form).
func validHostName(b []byte) bool {
	if len(b) == 0 || len(b) > 253 {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// serveSOCKS accepts SOCKS5 clients until the listener is closed.
func (p *Proxy) serveSOCKS(ln net.Listener) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ECONNABORTED) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				if !pause(backoff, p.done) {
					return
				}
				continue
			}
			p.log.Error("socks5 listener failed", "addr", ln.Addr().String(), "error", err)
			return
		}
		backoff = 0
		cc := c.(*clientConn)
		p.wg.Go(func() { p.handleSOCKS(cc) })
	}
}

// handleSOCKS serves one SOCKS5 client.
func (p *Proxy) handleSOCKS(cc *clientConn) {
	defer cc.Close()
	c := cc.Conn // replies are not charged to the user
	c.SetDeadline(time.Now().Add(p.cfg.HeaderTimeout))
	methods, err := readGreeting(c)
	if err != nil {
		p.socksBad(err)
		return
	}
	auth := p.cfg.Keys != nil
	var method byte = methodUnavailable
	switch {
	case !auth && methods[methodNone]:
		method = methodNone
	case methods[methodUserPass]:
		method = methodUserPass
	}
	if _, err := c.Write([]byte{socksVersion, method}); err != nil || method == methodUnavailable {
		if method == methodUnavailable {
			p.authFailures.Add(1)
		}
		return
	}
	var u *user
	if method == methodUserPass {
		name, password, err := readUserPass(c)
		if err != nil {
			p.socksBad(err)
			return
		}
		u, err = p.authenticate(name, password)
		status := byte(0)
		if err != nil {
			p.authFailures.Add(1)
			status = 1
		}
		if _, err := c.Write([]byte{socksAuthVersion, status}); err != nil || status != 0 {
			return
		}
	} else {
		u = p.userFor("", "")
	}
	req, rep, err := readRequest(c)
	if err != nil {
		p.socksBad(err)
		return
	}
	if rep == 0 {
		if err := cc.bind(u); err != nil || p.overQuota(u) {
			rep = repNotAllowed
		}
	}
	if rep == 0 {
		if st := p.checkTarget(req.host, strconv.Itoa(int(req.port)), false, true); st != 0 {
			rep = repNotAllowed
			p.denied.Add(1)
		}
	}
	var dst net.Conn
	if rep == 0 {
		ctx, cancel := context.WithTimeout(p.runCtx, p.cfg.DialTimeout)
		dst, err = p.dialer.DialContext(ctx, "tcp", net.JoinHostPort(req.host, strconv.Itoa(int(req.port))))
		cancel()
		if err != nil {
			rep = socksReply(err)
			if rep == repNotAllowed {
				p.denied.Add(1)
			} else {
				p.upstreamErrs.Add(1)
			}
		}
	}
	// BND.ADDR and BND.PORT are zero: the gateway's outside address is none
	// of the client's business.
	if _, err := c.Write([]byte{socksVersion, rep, 0, atypIPv4, 0, 0, 0, 0, 0, 0}); err != nil || rep != 0 {
		if dst != nil {
			dst.Close()
		}
		return
	}
	defer dst.Close()
	c.SetDeadline(time.Time{})
	upN, downN := p.tunnel(cc, dst, u)
	p.logAccess(u, "SOCKS5", req.host, net.JoinHostPort(req.host, strconv.Itoa(int(req.port))), 200, upN, downN)
}

func (p *Proxy) socksBad(err error) {
	if errors.Is(err, errSOCKS) {
		p.badRequests.Add(1)
	}
}

// socksReply maps a dial error to a reply code (RFC 1928 §6).
func socksReply(err error) byte {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, ErrDeniedDestination):
		return repNotAllowed
	case errors.Is(err, syscall.ECONNREFUSED):
		return repConnRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return repNetUnreachable
	case errors.As(err, &dnsErr), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, context.DeadlineExceeded):
		return repHostUnreachable
	}
	return repFailure
}
