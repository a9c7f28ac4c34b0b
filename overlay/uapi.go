package overlay

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/overlay/transport"
)

// WireGuard is configured through its UAPI text protocol
// (https://www.wireguard.com/xplatform/#configuration-protocol).

// deviceConfig sets the private key and port.
func deviceConfig(private [32]byte, port uint16) string {
	return fmt.Sprintf("private_key=%s\nlisten_port=%d\n", hex.EncodeToString(private[:]), port)
}

// peerChange adds a peer or changes its allowed IPs.
type peerChange struct {
	key     transport.Key
	allowed []netip.Prefix
	isNew   bool
}

// setPeersConfig adds or updates peers. A new peer's endpoint is its node
// key, which the transport Bind resolves to a path per packet.
func setPeersConfig(changes []peerChange) string {
	var b strings.Builder
	for _, c := range changes {
		fmt.Fprintf(&b, "public_key=%s\n", c.key)
		if c.isNew {
			fmt.Fprintf(&b, "endpoint=%s\n", c.key)
		}
		b.WriteString("replace_allowed_ips=true\n")
		for _, p := range c.allowed {
			fmt.Fprintf(&b, "allowed_ip=%s\n", p)
		}
	}
	return b.String()
}

// removePeersConfig removes peers.
func removePeersConfig(keys []transport.Key) string {
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "public_key=%s\nremove=true\n", k)
	}
	return b.String()
}

// wireGuardPeer is what WireGuard reports about a peer.
type wireGuardPeer struct {
	rxBytes, txBytes uint64
	lastHandshake    time.Time
}

// parseDeviceStatus reads the peers from the output of IpcGet. Unknown keys
// and malformed lines are skipped.
func parseDeviceStatus(s string) map[transport.Key]wireGuardPeer {
	out := make(map[transport.Key]wireGuardPeer)
	var cur transport.Key
	var p wireGuardPeer
	var sec, nsec int64
	have := false
	flush := func() {
		if have {
			if sec != 0 || nsec != 0 {
				p.lastHandshake = time.Unix(sec, nsec)
			}
			out[cur] = p
		}
		p, sec, nsec, have = wireGuardPeer{}, 0, 0, false
	}
	for line := range strings.Lines(s) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch k {
		case "public_key":
			flush()
			key, err := transport.ParseKey(v)
			if err != nil {
				continue
			}
			cur, have = key, true
		case "rx_bytes":
			p.rxBytes, _ = strconv.ParseUint(v, 10, 64)
		case "tx_bytes":
			p.txBytes, _ = strconv.ParseUint(v, 10, 64)
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	flush()
	return out
}
