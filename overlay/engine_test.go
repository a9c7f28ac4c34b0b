package overlay

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/overlay/transport"
	"github.com/google/go-cmp/cmp"
)

func testPrivateKey(b byte) [32]byte {
	var k [32]byte
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

func TestAddrFromKey(t *testing.T) {
	key := [32]byte{1, 2, 3}
	for _, tt := range []struct {
		prefix string
		want   string // the fixed part
	}{
		{"fd22:a88d:5470::/48", "fd22:a88d:5470:"},
		{"fd00:1:2:3::/64", "fd00:1:2:3:"},
		{"2001:db8::/32", "2001:db8:"},
	} {
		p := netip.MustParsePrefix(tt.prefix)
		a := AddrFromKey(p, key)
		if !p.Contains(a) || !strings.HasPrefix(a.String(), tt.want) {
			t.Errorf("AddrFromKey(%s) = %s, outside the prefix", p, a)
		}
		if again := AddrFromKey(p, key); again != a {
			t.Errorf("AddrFromKey(%s) not stable: %s, %s", p, a, again)
		}
		if other := AddrFromKey(p, [32]byte{9}); other == a {
			t.Errorf("AddrFromKey(%s) gives two keys the same address %s", p, a)
		}
	}
	// Odd prefix lengths keep exactly the prefix bits.
	p := netip.MustParsePrefix("fd12:3456:789a::/45")
	if a := AddrFromKey(p, key); !p.Contains(a) {
		t.Errorf("AddrFromKey(%s) = %s, outside the prefix", p, a)
	}
	if !DefaultIPv6Prefix.Addr().IsPrivate() || DefaultIPv6Prefix.Bits() != 48 {
		t.Errorf("DefaultIPv6Prefix %s is not a ULA /48", DefaultIPv6Prefix)
	}
}

func TestNewConfig(t *testing.T) {
	priv := testPrivateKey(1)
	pub := transport.PublicKey(priv)
	for _, tt := range []struct {
		name    string
		cfg     Config
		wantErr string
		want6   netip.Prefix
	}{
		{name: "zero-key", cfg: Config{}, wantErr: "PrivateKey is zero"},
		{name: "defaults", cfg: Config{PrivateKey: priv}, want6: netip.PrefixFrom(AddrFromKey(DefaultIPv6Prefix, pub), 48)},
		{
			name: "prefix-only", cfg: Config{PrivateKey: priv, IPv6: netip.MustParsePrefix("fd00:cb::/48")},
			want6: netip.PrefixFrom(AddrFromKey(netip.MustParsePrefix("fd00:cb::/48"), pub), 48),
		},
		{
			name: "explicit", cfg: Config{PrivateKey: priv, IPv6: netip.MustParsePrefix("fd00:cb::7/48")},
			want6: netip.MustParsePrefix("fd00:cb::7/48"),
		},
		{name: "v6-as-v4", cfg: Config{PrivateKey: priv, IPv4: netip.MustParsePrefix("fd00::1/64")}, wantErr: "not an IPv4 prefix"},
		{name: "v4-as-v6", cfg: Config{PrivateKey: priv, IPv6: netip.MustParsePrefix("198.18.0.1/15")}, wantErr: "not an IPv6 prefix"},
		{name: "mtu-too-small", cfg: Config{PrivateKey: priv, MTU: 576}, wantErr: "MTU 576"},
		{name: "long-name", cfg: Config{PrivateKey: priv, InterfaceName: "averyveryverylongname"}, wantErr: "longer than 15"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, err := New(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.IPv6() != tt.want6 {
				t.Errorf("IPv6 = %s, want %s", e.IPv6(), tt.want6)
			}
			if e.cfg.MTU != DefaultMTU || e.cfg.ListenPort != DefaultListenPort || e.cfg.InterfaceName != DefaultInterfaceName {
				t.Errorf("defaults not applied: %+v", e.cfg)
			}
		})
	}
}

func TestSetPeersValidation(t *testing.T) {
	priv := testPrivateKey(1)
	e, err := New(Config{PrivateKey: priv, IPv4: netip.MustParsePrefix("198.18.0.1/15")})
	if err != nil {
		t.Fatal(err)
	}
	peerKey := [32]byte(transport.PublicKey(testPrivateKey(2)))
	for _, tt := range []struct {
		name    string
		peers   []Peer
		wantErr string
	}{
		{"ok", []Peer{{NodeKey: peerKey, Name: "b", IPv4: netip.MustParseAddr("198.18.0.2")}}, ""},
		{"no-key", []Peer{{Name: "b"}}, "no node key"},
		{"own-key", []Peer{{NodeKey: e.PublicKey(), Name: "me"}}, "own node key"},
		{"twice", []Peer{{NodeKey: peerKey, Name: "b"}, {NodeKey: peerKey, Name: "c"}}, "appears twice"},
		{"v6-as-v4", []Peer{{NodeKey: peerKey, IPv4: netip.MustParseAddr("fd00::1")}}, "not an IPv4"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := e.SetPeers(tt.peers)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				ps := e.Peers()
				if len(ps) != 1 || ps[0].IPv6 != AddrFromKey(e.IPv6().Masked(), peerKey) || ps[0].Endpoint != "none" {
					t.Errorf("Peers() = %+v, want b with a derived IPv6 and no path", ps)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("SetPeers = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRunAfterClose(t *testing.T) {
	e, err := New(Config{PrivateKey: testPrivateKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := e.Run(t.Context()); err != ErrClosed {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
}

func TestUAPI(t *testing.T) {
	k := transport.Key{0xab}
	got := setPeersConfig([]peerChange{
		{key: k, isNew: true, allowed: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/32"), netip.MustParsePrefix("fd00::2/128")}},
		{key: k, allowed: nil},
	})
	want := "public_key=" + k.String() + "\nendpoint=" + k.String() + "\nreplace_allowed_ips=true\n" +
		"allowed_ip=198.18.0.2/32\nallowed_ip=fd00::2/128\n" +
		"public_key=" + k.String() + "\nreplace_allowed_ips=true\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("setPeersConfig (-want +got):\n%s", diff)
	}
	if got, want := removePeersConfig([]transport.Key{k}), "public_key="+k.String()+"\nremove=true\n"; got != want {
		t.Errorf("removePeersConfig = %q, want %q", got, want)
	}

	k2 := transport.Key{0xcd}
	status := "private_key=00\nlisten_port=51820\n" +
		"public_key=" + k.String() + "\nendpoint=" + k.String() + "\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n" +
		"tx_bytes=10\nrx_bytes=20\nallowed_ip=198.18.0.2/32\n" +
		"public_key=" + k2.String() + "\nrx_bytes=x\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\n" +
		"public_key=bogus\nrx_bytes=7\n"
	peers := parseDeviceStatus(status)
	wantPeers := map[transport.Key]wireGuardPeer{
		k:  {rxBytes: 20, txBytes: 10, lastHandshake: time.Unix(1700000000, 5)},
		k2: {},
	}
	if diff := cmp.Diff(wantPeers, peers, cmp.AllowUnexported(wireGuardPeer{})); diff != "" {
		t.Errorf("parseDeviceStatus (-want +got):\n%s", diff)
	}
}
