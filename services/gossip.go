package services

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossipLabel keeps other memberlist clusters from talking to this one.
const gossipLabel = "cloudbox-catalog-1"

// memberlistConfig tunes memberlist for lossy community radio links.
//
// SWIM declares a node dead only after it was suspected and nobody refuted
// within the suspicion timeout; Lifeguard (built into memberlist: local
// health awareness, dynamic suspicion timeouts, buddy system) stretches
// probes of a node that is itself struggling. On top of the LAN profile:
//   - 5 indirect probes instead of 3: at 20% loss a 4-packet relayed probe
//     succeeds 41% of the time, so the chance that all fail drops from 21%
//     to 7%; the TCP fallback ping (kept on) recovers most of the rest,
//     TCP retransmitting what radio loses.
//   - retransmit factor 5: each state message is sent more often, so a
//     refutation outruns the suspicion timeout despite loss.
//   - suspicion factor 4 with 1 s probes: at 200 members a dead node is
//     declared after 4*log10(200)*1s ≈ 9 s once two other members confirm
//     it (46 s at most without confirmation), so entries of a dead box go
//     within about 15 s, while a live one has 9 s or more to refute.
func (c *Catalog) memberlistConfig() (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.cfg.Self.NodeID
	mc.Label = gossipLabel
	mc.ProbeInterval = time.Second
	mc.ProbeTimeout = 500 * time.Millisecond
	mc.IndirectChecks = 5
	mc.SuspicionMult = 4
	mc.SuspicionMaxTimeoutMult = 5
	mc.RetransmitMult = 5
	mc.GossipInterval = 200 * time.Millisecond
	mc.TCPTimeout = 5 * time.Second
	// Full state exchange with one random member every 10 s (memberlist
	// stretches it above 32 members): it repairs summaries whose gossip
	// was lost, so a new catalog version reaches everyone within about
	// one interval even on a bad link.
	mc.PushPullInterval = 10 * time.Second
	mc.EnableCompression = false // summaries are tiny; do not inflate untrusted input
	d := &gossipDelegate{c: c}
	mc.Delegate, mc.Events, mc.Alive, mc.Merge = d, d, d, d
	mc.LogOutput = &logWriter{log: c.log}
	if c.cfg.Transport != nil {
		mc.Transport = c.cfg.Transport
		return mc, nil
	}
	bind := c.cfg.BindAddr
	if !bind.IsValid() {
		bind = c.cfg.Self.IPv6
	}
	if !bind.IsValid() {
		return nil, errors.New("catalog config: no address for gossip: set BindAddr or Self.IPv6")
	}
	mc.BindAddr = bind.String()
	mc.BindPort = int(c.cfg.GossipPort)
	mc.AdvertisePort = int(c.cfg.GossipPort)
	return mc, nil
}

// gossipAddr is where m's memberlist listens.
func (c *Catalog) gossipAddr(m Member) netip.AddrPort {
	if m.Gossip.IsValid() {
		return m.Gossip
	}
	return netip.AddrPortFrom(m.IPv6, c.cfg.GossipPort)
}

// gossipDelegate connects memberlist to the catalog. memberlist calls it
// with its own locks held: it takes c.mu briefly and never calls back.
type gossipDelegate struct{ c *Catalog }

var errNotMember = errors.New("not a member of the community")

// NotifyAlive refuses gossip about nodes that are not in the roster, or
// that claim an address other than the roster's.
func (d *gossipDelegate) NotifyAlive(n *memberlist.Node) error {
	c := d.c
	m, ok := c.roster.get(n.Name)
	if ok {
		ip, _ := netip.AddrFromSlice(n.Addr)
		if want := c.gossipAddr(m); ip.Unmap() != want.Addr().Unmap() || n.Port != want.Port() {
			c.countRefused()
			return fmt.Errorf("member %s announced at %s, the roster says %s", n.Name, netip.AddrPortFrom(ip.Unmap(), n.Port), want)
		}
		return nil
	}
	c.refuseStrangers(n)
	return fmt.Errorf("%w: %q", errNotMember, n.Name)
}

// NotifyMerge refuses to join a cluster none of whose nodes is a member;
// single strangers in a merge are refused by NotifyAlive.
func (d *gossipDelegate) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if _, ok := d.c.roster.get(n.Name); ok {
			return nil
		}
	}
	d.c.refuseStrangers(peers...)
	return fmt.Errorf("refusing to merge with %d nodes: %w", len(peers), errNotMember)
}

// refuseStrangers counts refused gossip about nodes the roster does not
// list and remembers their names: a box that joined through another one
// is a stranger here until the rosters sync, and readmit joins it then.
func (c *Catalog) refuseStrangers(nodes ...*memberlist.Node) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.gossipRefused++
	for _, n := range nodes {
		if _, ok := c.refused[n.Name]; ok || len(c.refused) < maxRefused {
			c.refused[n.Name] = now
		}
	}
}

func (c *Catalog) countRefused() {
	c.mu.Lock()
	c.stats.gossipRefused++
	c.mu.Unlock()
}

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	d.c.mu.Lock()
	defer d.c.mu.Unlock()
	return d.c.own.meta.encode()
}

func (d *gossipDelegate) NotifyMsg([]byte)                           {}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

func (d *gossipDelegate) NotifyJoin(n *memberlist.Node)   { d.c.nodeAlive(n) }
func (d *gossipDelegate) NotifyUpdate(n *memberlist.Node) { d.c.nodeAlive(n) }

// NotifyLeave is called when a node left or was declared dead: its entries
// go at once.
func (d *gossipDelegate) NotifyLeave(n *memberlist.Node) {
	c := d.c
	if n.Name == c.cfg.Self.NodeID {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peerLocked(n.Name)
	if !p.alive {
		return
	}
	p.alive = false
	p.failures++
	c.stats.departures++
	if p.doc != nil {
		p.doc = nil
		c.changedLocked()
	}
	c.log.Info("catalog member gone", "node", n.Name)
}

// nodeAlive records a joined or updated node and its summary.
func (c *Catalog) nodeAlive(n *memberlist.Node) {
	if n.Name == c.cfg.Self.NodeID {
		return
	}
	m, err := parseMeta(n.Meta)
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peerLocked(n.Name)
	wasAlive := p.alive
	p.alive = true
	if err != nil {
		c.stats.badMeta++
		p.hasMeta = false
	} else {
		p.meta, p.hasMeta = m, true
	}
	if !wasAlive && p.doc != nil {
		c.changedLocked()
	}
	c.queuePullLocked(p)
}

func (c *Catalog) peerLocked(id string) *peer {
	p := c.peers[id]
	if p == nil {
		p = &peer{id: id, tokens: pullBurst, refilled: time.Now()}
		c.peers[id] = p
	}
	return p
}

// logWriter turns memberlist's log lines ("[WARN] memberlist: ...") into
// slog records.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(b []byte) (int, error) {
	line := string(bytes.TrimSpace(b))
	level := slog.LevelDebug
	if i := strings.Index(line, "["); i >= 0 {
		switch {
		case strings.HasPrefix(line[i:], "[ERR"):
			level = slog.LevelError
		case strings.HasPrefix(line[i:], "[WARN"):
			level = slog.LevelWarn
		case strings.HasPrefix(line[i:], "[INFO"):
			level = slog.LevelInfo
		}
	}
	w.log.Log(context.Background(), level, "gossip engine", "line", line)
	return len(b), nil
}
