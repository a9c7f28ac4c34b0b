package stream

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/turn/v5"
)

const (
	// DefaultTURNPort is the port of the built-in TURN server (RFC 8656).
	DefaultTURNPort = 3478
	// TURNCredentialTTL is how long a TURN credential works.
	TURNCredentialTTL = 12 * time.Hour
	// turnRealm is the realm of the long-term credentials.
	turnRealm = "cloudbox"
)

// ICEServer is what a browser's RTCPeerConnection needs to use the
// built-in TURN server (RTCIceServer).
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username"`
	Credential string   `json:"credential"`
}

// turnServer is the built-in TURN server: for clients that can reach the
// box only through a relay (a firewall that lets nothing but the box's
// address and one port through). Credentials are short-lived and signed
// with the server's secret (the "TURN REST API" scheme): user name
// "EXPIRY:NAME", password base64(HMAC-SHA1(secret, user name)).
type turnServer struct {
	srv    *turn.Server
	conn   net.PacketConn
	secret []byte
	now    func() time.Time
	// relayIP is the fixed address of the relays, nil for the box's.
	relayIP net.IP
}

// relayAddrs allocates each relay on the box's current address (or a
// fixed one) and reports it there. Bound to every address instead, a
// relay's packets to a peer reached through another interface (the
// overlay's cb0) left from that interface's address, so the peer saw them
// from an address the relay candidate did not name and the browser ended
// up on a peer-reflexive pair (found by meshtest TestStreamMesh).
type relayAddrs struct {
	mu sync.Mutex // guards the embedded generator's RelayAddress
	turn.RelayAddressGeneratorStatic
	fixed net.IP
}

func (r *relayAddrs) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ip := r.fixed
	if ip == nil {
		ip = boxAddress()
	}
	if ip == nil {
		return nil, nil, errors.New("this box has no address to relay on")
	}
	r.RelayAddress, r.Address = ip, ip.String()
	return r.RelayAddressGeneratorStatic.AllocatePacketConn(c)
}

// boxAddress returns the box's first global unicast IPv4 address.
func boxAddress() net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
			return ipn.IP
		}
	}
	return nil
}

func newTURNServer(addr string, secret []byte, relayIP net.IP) (*turnServer, error) {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		rand.Read(secret)
	}
	var lc net.ListenConfig
	conn, err := lc.ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for TURN on udp %s: %w", addr, err)
	}
	t := &turnServer{conn: conn, secret: secret, now: time.Now, relayIP: relayIP}
	gen := &relayAddrs{RelayAddressGeneratorStatic: turn.RelayAddressGeneratorStatic{RelayAddress: net.IPv4zero, Address: "0.0.0.0"},
		fixed: relayIP}
	t.srv, err = turn.NewServer(turn.ServerConfig{
		Realm:             turnRealm,
		AuthHandler:       t.auth,
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: conn, RelayAddressGenerator: gen}},
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("starting TURN: %w", err)
	}
	return t, nil
}

// credential returns a credential for name valid for TURNCredentialTTL.
func (t *turnServer) credential(name string) (user, password string) {
	user = strconv.FormatInt(t.now().Add(TURNCredentialTTL).Unix(), 10) + ":" + strings.ReplaceAll(name, ":", "_")
	return user, t.password(user)
}

func (t *turnServer) password(user string) string {
	m := hmac.New(sha1.New, t.secret)
	m.Write([]byte(user))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// auth implements turn.AuthHandler: the user name's expiry must be in
// the future, the key is derived from the signed password.
func (t *turnServer) auth(ra *turn.RequestAttributes) (string, []byte, bool) {
	exp, _, ok := strings.Cut(ra.Username, ":")
	if !ok {
		return "", nil, false
	}
	sec, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || t.now().Unix() > sec {
		return "", nil, false
	}
	return ra.Username, turn.GenerateAuthKey(ra.Username, turnRealm, t.password(ra.Username)), true
}

func (t *turnServer) port() int { return t.conn.LocalAddr().(*net.UDPAddr).Port }

func (t *turnServer) close() error { return t.srv.Close() }

// TURNCredential returns the built-in TURN server as an RTCIceServer for
// a client that reached the box at host (an IP address or name), with a
// credential for name; false when the server runs no TURN.
func (s *Server) TURNCredential(host, name string) (ICEServer, bool) {
	if s.turn == nil {
		return ICEServer{}, false
	}
	user, pass := s.turn.credential(name)
	host = strings.Trim(host, "[]")
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() && s.turn.relayIP == nil {
		// Browsers send ICE from their interfaces' addresses, never
		// from loopback: name the box by its own address.
		if a := boxAddress(); a != nil {
			host = a.String()
		}
	}
	hp := net.JoinHostPort(host, strconv.Itoa(s.turn.port()))
	return ICEServer{URLs: []string{"turn:" + hp + "?transport=udp"}, Username: user, Credential: pass}, true
}
