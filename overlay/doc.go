// Package overlay is the encrypted layer-3 mesh between the boxes of a
// community: a TUN interface ("cb0") on every box, and WireGuard sessions to
// every other member, carried directly over UDP where possible and relayed
// through another member where not.
//
// The data plane is wireguard-go's device package (Noise IKpsk2 handshakes
// with forward secrecy, ChaCha20-Poly1305, replay window, rekeying,
// keepalives) over its offload-capable TUN. The overlay adds what WireGuard
// leaves out, in overlay/transport: path discovery, NAT hole punching and
// relaying, decided per peer and per packet in a custom conn.Bind. Relayed
// traffic stays end-to-end encrypted; a relay forwards ciphertext it cannot
// read. There is no central server: any member that two others reach can
// relay between them, and relays pass packets on through relays of their
// own (multi-hop) when no single member reaches both ends.
//
// An Engine owns one interface. Its addresses come from Config (an IPv4
// address in the community range, an IPv6 ULA derived from the node key);
// its peers come from SetPeers. Membership, certificates and the peer list
// itself are not this package's business (see overlay/membership), nor are
// the HTTP API or metrics rendering: Peers and Stats expose what they need.
//
// # MTU
//
// The overlay MTU is chosen so that no overlay packet is fragmented on a
// 1500-byte underlay, even relayed over IPv6:
//
//	1500  underlay MTU
//	 -40  IPv6 header (IPv4 would need only 20)
//	  -8  UDP header
//	 -32  WireGuard: 16-byte transport header, 16-byte Poly1305 tag
//	 -34  relay header: magic, type, 32-byte node key (or, between two
//	      relays, hop count and two 15-byte node IDs: the same length)
//	= 1386, rounded down to a multiple of 4: DefaultMTU = 1380.
//
// WireGuard pads the plaintext to a multiple of 16 but never beyond the MTU,
// so 1380 bytes of payload leave as at most 1380+32+34+8+40 = 1494 bytes.
package overlay
