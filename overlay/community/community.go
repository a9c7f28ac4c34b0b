// Package community holds what the holder of a community's root key does:
// found the community (the founding box becomes its first member), invite
// new boxes with addresses that do not collide, and keep a ledger of the
// invitations given out. Boxes without the root key never use it.
//
// The address ledger lives next to the root key (invites.json). With a
// single root-key holder, which is how a community starts, addresses are
// unique without any central registry; a community that copies its root key
// to several boxes must give each a disjoint part of the range (not
// automated yet).
package community

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
	"github.com/cloudbox/cloudbox/overlay/membership"
)

// LedgerFile is the file, in the membership store's directory, that records
// every invitation given out and the address it reserved.
const LedgerFile = "invites.json"

// maxLedgerSize bounds the ledger file.
const maxLedgerSize = 4 << 20

// ErrNotAdmin is returned when the store does not hold the root key.
var ErrNotAdmin = errors.New("this box does not hold the community's root key")

// ErrRangeFull is returned when no overlay address is left to give out.
var ErrRangeFull = errors.New("no free overlay address left in the community range")

// ErrExists is returned by Init when the store already belongs to a
// community.
var ErrExists = errors.New("this box is already a member of a community")

// Admin performs the root-key holder's operations on a membership store.
type Admin struct {
	store     *membership.Store
	root      ed25519.PrivateKey
	community membership.Community
	rand      io.Reader
}

type ledger struct {
	Version int           `json:"version"`
	Invites []ledgerEntry `json:"invites"`
}

type ledgerEntry struct {
	InviteID string    `json:"invite_id"` // hex
	Name     string    `json:"name"`
	IPv4     string    `json:"ipv4"`
	Expires  time.Time `json:"expires"`
}

// Init founds a community named name over the IPv4 range v4 in store: it
// creates the root key, and makes the box with nodeKey its first member, with
// the first address of the range, through a self-invitation renewed into a
// root-signed certificate. rand nil means crypto/rand.
func Init(store *membership.Store, name string, v4 netip.Prefix, nodeName string, nodeKey [32]byte, now time.Time, rand io.Reader) (*Admin, *membership.Membership, error) {
	if _, err := store.LoadCommunity(); err == nil {
		return nil, nil, ErrExists
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("checking for an existing community: %w", err)
	}
	c, root, err := membership.NewCommunity(name, v4.Masked(), rand)
	if err != nil {
		return nil, nil, fmt.Errorf("creating community: %w", err)
	}
	a := &Admin{store: store, root: root, community: c, rand: rand}
	first, err := a.nextFree(&ledger{Version: 1})
	if err != nil {
		return nil, nil, err
	}
	inv, err := membership.NewInvitation(root, c, membership.InviteOptions{Name: nodeName, IPv4: first, Expires: now.Add(time.Hour)}, rand)
	if err != nil {
		return nil, nil, fmt.Errorf("inviting the founding box: %w", err)
	}
	own, err := inv.Issue(nodeKey, now, 0, rand)
	if err != nil {
		return nil, nil, fmt.Errorf("issuing the founding box's certificate: %w", err)
	}
	own, err = membership.Renew(root, c, own, nil, now, 0, rand)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the founding box's certificate: %w", err)
	}
	l := &ledger{Version: 1}
	l.add(inv)
	// The root key is written last: a box with a community and a
	// membership but no key is a member; a key without the rest would be
	// an orphan.
	if err := store.SaveCommunity(c); err != nil {
		return nil, nil, err
	}
	if err := store.SaveMembership(own); err != nil {
		return nil, nil, err
	}
	if err := a.saveLedger(l); err != nil {
		return nil, nil, err
	}
	if err := store.SaveRootKey(root); err != nil {
		return nil, nil, err
	}
	return a, own, nil
}

// Open returns the Admin of the community in store, which must hold the
// root key.
func Open(store *membership.Store, rand io.Reader) (*Admin, error) {
	c, err := store.LoadCommunity()
	if err != nil {
		return nil, fmt.Errorf("loading community: %w", err)
	}
	root, err := store.LoadRootKey()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotAdmin
	}
	if err != nil {
		return nil, fmt.Errorf("loading root key: %w", err)
	}
	return &Admin{store: store, root: root, community: c, rand: rand}, nil
}

// Community returns the community administered.
func (a *Admin) Community() membership.Community { return a.community }

// RootKey returns the community's root signing key.
func (a *Admin) RootKey() ed25519.PrivateKey { return a.root }

// InviteRequest describes an invitation to give out.
type InviteRequest struct {
	// Name of the new box; zero means "box-N" with N its address's index.
	Name string
	// Groups of the new member; nil means none.
	Groups []string
	// Expires ends the invitation's use; required.
	Expires time.Time
	// Bootstrap lists members' underlay endpoints (address and overlay
	// UDP port; the join service listens on the same TCP port).
	Bootstrap []netip.AddrPort
}

// Invite reserves the next free overlay address, records it in the ledger
// and returns the one-time invitation.
func (a *Admin) Invite(req InviteRequest) (*membership.Invitation, error) {
	l, err := a.loadLedger()
	if err != nil {
		return nil, err
	}
	addr, err := a.nextFree(l)
	if err != nil {
		return nil, err
	}
	name := req.Name
	if name == "" {
		name = fmt.Sprintf("box-%d", len(l.Invites)+1)
	}
	inv, err := membership.NewInvitation(a.root, a.community, membership.InviteOptions{
		Name: name, IPv4: addr, Groups: req.Groups, Expires: req.Expires, Bootstrap: req.Bootstrap,
	}, a.rand)
	if err != nil {
		return nil, err
	}
	l.add(inv)
	if err := a.saveLedger(l); err != nil {
		return nil, err
	}
	return inv, nil
}

func (l *ledger) add(inv *membership.Invitation) {
	d := inv.Delegation()
	l.Invites = append(l.Invites, ledgerEntry{
		InviteID: hex.EncodeToString(d.InviteID[:]),
		Name:     d.Name,
		IPv4:     d.IPv4.String(),
		Expires:  time.Unix(d.Expires.Unix(), 0).UTC(),
	})
}

// nextFree returns the lowest host address of the range that no ledger entry
// holds. Addresses of invitations that expired unredeemed are not reused:
// the ledger cannot know whether a copy of the token was redeemed elsewhere.
func (a *Admin) nextFree(l *ledger) (netip.Addr, error) {
	used := map[netip.Addr]bool{}
	for _, e := range l.Invites {
		if addr, err := netip.ParseAddr(e.IPv4); err == nil {
			used[addr] = true
		}
	}
	p := a.community.IPv4
	// Skip the network address; stop before the broadcast address.
	for addr := p.Addr().Next(); p.Contains(addr) && p.Contains(addr.Next()); addr = addr.Next() {
		if !used[addr] {
			return addr, nil
		}
	}
	return netip.Addr{}, ErrRangeFull
}

func (a *Admin) ledgerPath() string { return filepath.Join(a.store.Dir(), LedgerFile) }

func (a *Admin) loadLedger() (*ledger, error) {
	path := a.ledgerPath()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &ledger{Version: 1}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading invitation ledger: %w", err)
	}
	if len(b) > maxLedgerSize {
		return nil, fmt.Errorf("invitation ledger %s is larger than %d bytes", path, maxLedgerSize)
	}
	var l ledger
	if err := json.Unmarshal(b, &l); err != nil || l.Version != 1 {
		return nil, fmt.Errorf("invitation ledger %s is corrupt (version %d): %v", path, l.Version, err)
	}
	return &l, nil
}

func (a *Admin) saveLedger(l *ledger) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(a.ledgerPath(), b, 0o600); err != nil {
		return fmt.Errorf("writing invitation ledger: %w", err)
	}
	return nil
}
