//go:build !router

package appliance

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/services"
	"github.com/cloudbox/cloudbox/stream"
)

// DefaultStreamICEAddr is where the WebRTC media of every stream session
// flows (UDP, and TCP for ICE over TCP): one port to open in a firewall.
var DefaultStreamICEAddr = ":" + strconv.Itoa(stream.DefaultICEPort)

// The catalog types of streams: a stream published on its box, and the
// same stream relayed by another box (which viewers' boxes may pull from
// when it is nearer). The port is the panel's, which serves WHEP.
const (
	streamType      = "_cb-stream._tcp"
	streamRelayType = "_cb-relay._tcp"
)

// relayBonus is how much nearer than a relay the origin must be (besides
// half its RTT) to be preferred as a source.
const relayBonus = 2 * time.Millisecond

// streamService is the live streaming component: the stream server, its
// catalog entries and where it pulls streams of other boxes from.
type streamService struct {
	// Immutable after openStream.
	nodeID string
	log    *slog.Logger
	srv    *stream.Server // nil when off or not running
	// problem says why srv is nil ("" when turned off).
	problem string
	off     bool
	// keys are the streams' publish keys; nil when they cannot be read
	// (problem says why).
	keys *streamKeys
	// records returns the catalog's services of a type; paths the
	// overlay's paths by node ID; community the community's prefixes
	// (boxes that pull a stream come from them).
	records   func(typ string) []services.Record
	paths     func() map[string]overlayPath
	community func() []netip.Prefix

	// mu guards the following.
	mu       sync.Mutex
	httpPort uint16 // the panel's, published in the catalog
}

func openStream(cfg StreamConfig, nodeID, stateDir string, ov *overlayService, logger *slog.Logger) *streamService {
	st := &streamService{nodeID: nodeID, log: logger.With("component", "stream"), paths: ov.paths,
		community: ov.communityPrefixes, records: func(typ string) []services.Record {
			cat := ov.catalog.current()
			if cat == nil {
				return nil
			}
			return cat.Services(services.Filter{Type: typ, Health: "healthy"})
		}}
	keys, err := loadStreamKeys(stateDir)
	if err != nil {
		st.problem = fmt.Sprintf("%v; move the file away to start without publish keys", err)
		st.log.Error("streaming not running", "error", err)
		return st
	}
	st.keys = keys
	addr := cmp.Or(cfg.ICEAddr, DefaultStreamICEAddr)
	if addr == "off" {
		st.off = true
		return st
	}
	srv, err := stream.New(stream.Config{ICEUDPAddr: addr, ICETCPAddr: addr, TURNAddr: cfg.TURNAddr, Sources: st.sources,
		NodeID: nodeID, Logger: logger})
	if err != nil {
		st.problem = fmt.Sprintf("%v; free the port or choose another with --stream-ice", err)
		st.log.Error("streaming not running", "error", err)
		return st
	}
	st.srv = srv
	return st
}

// run serves until ctx is done.
func (st *streamService) run(ctx context.Context) error {
	if st.srv == nil {
		return nil
	}
	return st.srv.Run(ctx)
}

// close stops the stream server if Run returns before running it;
// idempotent.
func (st *streamService) close() {
	if st.srv != nil {
		st.srv.Close()
	}
}

// setHTTPAddr records the panel's address, whose port the catalog entries
// carry.
func (st *streamService) setHTTPAddr(a net.Addr) {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		st.mu.Lock()
		st.httpPort = ap.Port()
		st.mu.Unlock()
	}
}

func (st *streamService) status(context.Context) ComponentStatus {
	switch {
	case st.off:
		return ComponentStatus{OK: true, Detail: map[string]string{"state": "off"}}
	case st.srv == nil:
		return ComponentStatus{OK: false, Error: st.problem}
	}
	live, relayed, viewers := 0, 0, 0
	for _, in := range st.srv.Streams() {
		if in.Relay {
			relayed++
		} else {
			live++
		}
		viewers += in.Viewers
	}
	d := map[string]string{"ice_port": strconv.Itoa(st.srv.ICEPort()),
		"streams": strconv.Itoa(live), "relayed": strconv.Itoa(relayed), "viewers": strconv.Itoa(viewers)}
	if p := st.srv.TURNProblem(); p != "" {
		d["turn"] = p
	}
	return ComponentStatus{OK: true, Detail: d}
}

// builtinServices returns the catalog entries of this box's streams: one
// per published stream and one per relayed stream (with its upstream, so
// that two boxes never pull from each other).
func (st *streamService) builtinServices() []services.Service {
	if st.srv == nil {
		return nil
	}
	st.mu.Lock()
	port := st.httpPort
	st.mu.Unlock()
	if port == 0 {
		return nil
	}
	var out []services.Service
	for _, in := range st.srv.Streams() {
		if in.Source == "" && !in.Relay {
			continue // waiting for its publisher
		}
		s := services.Service{Instance: in.Name, Type: streamType, Port: port,
			Description: cutUTF8(in.Description, 256), TXT: map[string]string{"path": "/streams/watch?name=" + in.Name}}
		if in.Relay {
			if in.Upstream == "" {
				continue
			}
			s.Type, s.TXT = streamRelayType, map[string]string{"up": in.Upstream}
		}
		out = append(out, s)
	}
	return out
}

// liveStream is a stream of the community, from the catalog.
type liveStream struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Box         string `json:"box"`
	BoxID       string `json:"box_id"`
	// Relays are the boxes that relay it now.
	Relays []string `json:"relays,omitempty"`
	// Watch is the player page, on this box.
	Watch string `json:"watch"`
}

// live returns the community's streams, from the catalog, with this
// box's own first.
func (st *streamService) live() []liveStream {
	var out []liveStream
	relays := make(map[string][]string)
	for _, r := range st.records(streamRelayType) {
		relays[r.Instance] = append(relays[r.Instance], r.OwnerName)
	}
	seen := make(map[string]bool)
	add := func(name, desc, box, id string) {
		if seen[name] {
			return
		}
		seen[name] = true
		out = append(out, liveStream{Name: name, Description: desc, Box: box, BoxID: id, Relays: relays[name],
			Watch: "/streams/watch?name=" + name})
	}
	if st.srv != nil {
		for _, in := range st.srv.Streams() {
			if !in.Relay && in.Source != "" {
				add(in.Name, in.Description, "", st.nodeID)
			}
		}
	}
	for _, r := range st.records(streamType) {
		if stream.ValidName(r.Instance) == nil {
			add(r.Instance, r.Description, r.OwnerName, r.OwnerID)
		}
	}
	return out
}

// overlayPath is the overlay's path to a member.
type overlayPath struct {
	// RTT is the last round-trip time measured over the path (for a
	// relayed path possibly only to the first relay); zero if unknown.
	RTT time.Duration
	// Direct is true when packets go straight to the member.
	Direct bool
}

// paths returns the overlay's paths by node ID; nil while it does not run.
func (o *overlayService) paths() map[string]overlayPath {
	o.mu.Lock()
	run := o.running
	o.mu.Unlock()
	if run == nil {
		return nil
	}
	byKey := make(map[[32]byte]overlayPath)
	for _, p := range run.engine.Peers() {
		byKey[p.NodeKey] = overlayPath{RTT: p.RTT, Direct: p.Direct}
	}
	out := make(map[string]overlayPath)
	for _, m := range run.roster.Members() {
		if p, ok := byKey[m.NodeKey]; ok {
			out[m.NodeID] = p
		}
	}
	return out
}

// sources returns where this box can pull stream name from: its origin
// and the boxes relaying it (not through this box), nearest first: boxes
// the overlay reaches directly before those it reaches through others,
// then by round-trip time.
func (st *streamService) sources(name string) []stream.Source {
	paths := st.paths()
	type cand struct {
		src    stream.Source
		rtt    time.Duration
		direct bool
		relay  bool
	}
	var cs []cand
	origin := false
	for _, typ := range []string{streamType, streamRelayType} {
		for _, r := range st.records(typ) {
			if r.Instance != name || r.OwnerID == st.nodeID || !r.OwnerIPv4.IsValid() {
				continue
			}
			if typ == streamRelayType && r.TXT["up"] == st.nodeID {
				continue
			}
			origin = origin || typ == streamType
			u := "http://" + netip.AddrPortFrom(r.OwnerIPv4, r.Port).String() + "/api/v1/streams/" + name + "/whep"
			p := paths[r.OwnerID]
			rtt := p.RTT
			if rtt <= 0 {
				rtt = time.Hour
			}
			cs = append(cs, cand{stream.Source{URL: u, NodeID: r.OwnerID, Name: r.OwnerName, RTT: p.RTT}, rtt, p.Direct, typ == streamRelayType})
		}
	}
	// Direct neighbours first (a stream from a relay next door crosses
	// one link), then the nearest, but relays before the origin unless
	// the origin is clearly nearer (under half the RTT and 2 ms less), so
	// that the origin's uplink carries the stream to few boxes and the
	// others form a tree.
	score := func(c cand) time.Duration {
		if c.relay {
			return c.rtt
		}
		return 2*c.rtt + relayBonus
	}
	slices.SortStableFunc(cs, func(a, b cand) int {
		if a.direct != b.direct {
			if a.direct {
				return -1
			}
			return 1
		}
		return cmp.Compare(score(a), score(b))
	})
	if !origin {
		// Relays of a stream whose origin is gone relay nothing.
		return nil
	}
	out := make([]stream.Source, len(cs))
	for i, c := range cs {
		out[i] = c.src
	}
	return out
}

// fromCommunity reports whether r comes from a box of the community (an
// overlay address), which may pull streams without an account: the
// overlay authenticates every box.
func (st *streamService) fromCommunity(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	return slices.ContainsFunc(st.community(), func(p netip.Prefix) bool { return p.Contains(ip) })
}
