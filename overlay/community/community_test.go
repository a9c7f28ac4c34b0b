package community

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/overlay/membership"
)

func nodeKey(t *testing.T) [32]byte {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var pub [32]byte
	copy(pub[:], k.PublicKey().Bytes())
	return pub
}

func openStore(t *testing.T, dir string) *membership.Store {
	t.Helper()
	s, err := membership.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInitAndInvite(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	dir := filepath.Join(t.TempDir(), "overlay")
	store := openStore(t, dir)
	founder := nodeKey(t)
	admin, own, err := Init(store, "testnet", netip.MustParsePrefix("198.18.0.0/15"), "founder", founder, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := admin.Community()
	if err := membership.VerifyMembership(c, own, now, nil); err != nil {
		t.Fatalf("founder's membership does not verify: %v", err)
	}
	if own.Delegation != nil {
		t.Error("founder's certificate is not signed by the root key directly")
	}
	if got, want := own.Certificate.IPv4, netip.MustParseAddr("198.18.0.1"); got != want {
		t.Errorf("founder address %v, want %v", got, want)
	}
	if _, _, err := Init(store, "again", netip.MustParsePrefix("198.18.0.0/15"), "x", founder, now, nil); !errors.Is(err, ErrExists) {
		t.Errorf("second Init: %v, want ErrExists", err)
	}

	// A fresh Admin from disk continues the ledger.
	admin, err = Open(openStore(t, dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"198.18.0.2", "198.18.0.3"} {
		inv, err := admin.Invite(InviteRequest{Expires: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		d := inv.Delegation()
		if d.IPv4.String() != want {
			t.Errorf("invite %d: address %v, want %s", i, d.IPv4, want)
		}
		parsed, err := membership.ParseInvitation(inv.Token())
		if err != nil {
			t.Fatal(err)
		}
		m, err := parsed.Issue(nodeKey(t), now, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := membership.VerifyMembership(c, m, now, nil); err != nil {
			t.Errorf("invite %d: redeemed membership does not verify: %v", i, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, LedgerFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ledger: %v, mode %v", err, fi.Mode())
	}
}

func TestOpenWithoutRootKey(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	dir := t.TempDir()
	if _, _, err := Init(openStore(t, dir), "testnet", netip.MustParsePrefix("198.18.0.0/15"), "founder", nodeKey(t), now, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, membership.RootKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(openStore(t, dir), nil); !errors.Is(err, ErrNotAdmin) {
		t.Errorf("Open without root key: %v, want ErrNotAdmin", err)
	}
}

func TestRangeFull(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	// 192.0.2.0/30: hosts .1 (founder) and .2, then nothing.
	admin, _, err := Init(openStore(t, t.TempDir()), "tiny", netip.MustParsePrefix("192.0.2.0/30"), "founder", nodeKey(t), now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Invite(InviteRequest{Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Invite(InviteRequest{Expires: now.Add(time.Hour)}); !errors.Is(err, ErrRangeFull) {
		t.Errorf("invite beyond the range: %v, want ErrRangeFull", err)
	}
}

func TestCorruptLedger(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	dir := t.TempDir()
	admin, _, err := Init(openStore(t, dir), "testnet", netip.MustParsePrefix("198.18.0.0/15"), "founder", nodeKey(t), now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, LedgerFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Invite(InviteRequest{Expires: now.Add(time.Hour)}); err == nil {
		t.Error("Invite with a corrupt ledger succeeded: addresses could be given out twice")
	}
}
