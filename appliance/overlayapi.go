package appliance

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/overlay/membership"
	"github.com/cloudbox/cloudbox/overlay/roster"
	"github.com/cloudbox/cloudbox/services"
)

// overlaySource is what the handler shows of the overlay and may change;
// *overlayService implements it, handler tests use fakes.
type overlaySource interface {
	// view returns a snapshot of the overlay.
	view() overlayView
	// revoke revokes the member with the node ID with the root key.
	revoke(nodeID, reason string) (roster.MemberInfo, error)
	// requestJoin starts joining the community of an invitation token
	// and returns its name.
	requestJoin(token string) (string, error)
}

// maxRevokeRequest bounds the body of POST /api/v1/overlay/revoke.
const maxRevokeRequest = 4 << 10

// maxRevokeReason is the longest reason a revocation list entry carries.
const maxRevokeReason = 64

func (h *handler) overlayView() overlayView {
	if h.cfg.overlay == nil {
		return overlayView{State: "not a member: " + notMemberHint, NotMember: true}
	}
	return h.cfg.overlay.view()
}

// notRunning says why the overlay does not run, for API errors.
func notRunning(v overlayView) string {
	msg := "the overlay is not running (" + v.State + ")"
	if v.Problem != "" {
		msg += ": " + v.Problem
	}
	return msg
}

// overlayPeer is one element of GET /api/v1/overlay/peers.
type overlayPeer struct {
	Name   string   `json:"name"`
	NodeID string   `json:"node_id"`
	IPv4   string   `json:"ipv4"`
	IPv6   string   `json:"ipv6"`
	Groups []string `json:"groups"`
	Self   bool     `json:"self"`
	// Endpoints are the underlay endpoints the member reported.
	Endpoints []string `json:"endpoints"`
	// The live state of the path from the engine; zero and null for this
	// box.
	Endpoint      string   `json:"endpoint"`
	Direct        bool     `json:"direct"`
	Via           string   `json:"via"`
	RTTMs         *float64 `json:"rtt_ms"`
	RxBytes       uint64   `json:"rx_bytes"`
	TxBytes       uint64   `json:"tx_bytes"`
	LastHandshake *string  `json:"last_handshake"`
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func (h *handler) overlayPeers(w http.ResponseWriter, r *http.Request) {
	v := h.overlayView()
	if !v.Running {
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: notRunning(v)})
		return
	}
	out := make([]overlayPeer, 0, len(v.Members))
	for _, m := range v.Members {
		p := overlayPeer{
			Name:      m.Name,
			NodeID:    m.NodeID,
			IPv4:      addrString(m.IPv4),
			IPv6:      addrString(m.IPv6),
			Groups:    append([]string{}, m.Groups...),
			Self:      m.Self,
			Endpoints: []string{},
		}
		for _, ep := range m.Endpoints {
			p.Endpoints = append(p.Endpoints, ep.String())
		}
		if l := m.Live; m.HasLive && !m.Self {
			p.Endpoint, p.Direct, p.Via = l.Endpoint, l.Direct, l.Via
			p.RxBytes, p.TxBytes = l.RxBytes, l.TxBytes
			if l.RTT > 0 {
				ms := float64(l.RTT) / float64(time.Millisecond)
				p.RTTMs = &ms
			}
			if !l.LastHandshake.IsZero() {
				s := l.LastHandshake.UTC().Format(time.RFC3339)
				p.LastHandshake = &s
			}
		}
		out = append(out, p)
	}
	writeJSON(w, http.StatusOK, out)
}

// revokeRequest is the body of POST /api/v1/overlay/revoke.
type revokeRequest struct {
	NodeID string `json:"node_id"`
	Reason string `json:"reason"`
}

// revokeResponse answers a successful revocation.
type revokeResponse struct {
	Revoked struct {
		Name   string `json:"name"`
		NodeID string `json:"node_id"`
	} `json:"revoked"`
}

// overlayRevoke revokes a member; only administrators may (see auth.go),
// and only with a JSON body, which a cross-site form cannot send.
func (h *handler) overlayRevoke(w http.ResponseWriter, r *http.Request) {
	var req revokeRequest
	if !decodeJSONPost(w, r, maxRevokeRequest, &req,
		fmt.Sprintf(`{"node_id": "<node ID from GET /api/v1/overlay/peers>", "reason": "<at most %d bytes>"}`, maxRevokeReason)) {
		return
	}
	if req.NodeID == "" {
		writeJSON(w, http.StatusBadRequest, errorResponse{
			Error: fmt.Sprintf(`want {"node_id": "<node ID from GET /api/v1/overlay/peers>", "reason": "<at most %d bytes>"}`, maxRevokeReason),
		})
		return
	}
	if len(req.Reason) > maxRevokeReason {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: fmt.Sprintf("reason is %d bytes long, at most %d allowed", len(req.Reason), maxRevokeReason)})
		return
	}
	if h.cfg.overlay == nil {
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: notRunning(h.overlayView())})
		return
	}
	m, err := h.cfg.overlay.revoke(req.NodeID, req.Reason)
	if err != nil {
		code := http.StatusInternalServerError
		msg := err.Error()
		switch {
		case errors.Is(err, errOverlayNotRunning):
			code, msg = http.StatusServiceUnavailable, notRunning(h.overlayView())
		case errors.Is(err, errNotAdmin):
			code = http.StatusForbidden
		case errors.Is(err, errNoSuchMember):
			code = http.StatusNotFound
			msg += "; GET /api/v1/overlay/peers lists the members"
		case errors.Is(err, errRevokeSelf):
			code = http.StatusConflict
		case errors.Is(err, membership.ErrMalformed):
			code = http.StatusBadRequest
		}
		writeJSON(w, code, errorResponse{Error: msg})
		return
	}
	var resp revokeResponse
	resp.Revoked.Name, resp.Revoked.NodeID = m.Name, m.NodeID
	writeJSON(w, http.StatusOK, resp)
}

// memberRow is a member as the community page shows it.
type memberRow struct {
	Name   string
	NodeID string
	IPv4   string
	IPv6   string
	Groups []string
	Self   bool
	// Version is the software version the box runs, as its update agent
	// announces it in the catalog; "–" when unknown.
	Version string
	// Kind is "self", "direct", "relay" or "none".
	Kind string
	// Path is "direct 192.0.2.2:51820", "relay via b3", ... or "no path".
	Path          string
	RTT           string
	Rx, Tx        string
	LastHandshake time.Time
	HandshakeAgo  string
}

func (h *handler) community(w http.ResponseWriter, r *http.Request) {
	h.communityPage(w, r, http.StatusOK, communityForm{})
}

// communityForm is what the community page shows after one of its forms.
type communityForm struct {
	// JoinError and Token are the error and the token of a join form
	// that failed.
	JoinError, Token string
	// InviteName, InviteError and Invitation are the invitation form's
	// name, error and the invitation it created.
	InviteName, InviteError, Invitation string
}

// communityPage renders the community page with the outcome of a form.
func (h *handler) communityPage(w http.ResponseWriter, r *http.Request, code int, form communityForm) {
	v := h.overlayView()
	now := h.cfg.now()
	versions := h.memberVersions()
	var rows []memberRow
	for _, m := range v.Members {
		row := memberRow{
			Name: m.Name, NodeID: m.NodeID, IPv4: addrString(m.IPv4), IPv6: addrString(m.IPv6),
			Groups: m.Groups, Self: m.Self, Kind: "none", Path: "no path yet", RTT: "–", Rx: "–", Tx: "–",
			Version: cmp.Or(versions[m.NodeID], "–"),
		}
		if m.Self {
			row.Version = h.cfg.version
		}
		l := m.Live
		switch {
		case m.Self:
			row.Kind, row.Path = "self", "this box"
		case !m.HasLive || l.Endpoint == "none":
		case l.Direct:
			row.Kind, row.Path = "direct", l.Endpoint
		case l.Via != "":
			row.Kind, row.Path = "relay", l.Endpoint
		}
		if m.HasLive && !m.Self {
			if l.RTT > 0 {
				row.RTT = fmt.Sprintf("%.1f ms", float64(l.RTT)/float64(time.Millisecond))
			}
			row.Rx, row.Tx = formatBytes(l.RxBytes), formatBytes(l.TxBytes)
			if !l.LastHandshake.IsZero() {
				row.LastHandshake = l.LastHandshake.UTC()
				row.HandshakeAgo = formatUptime(max(now.Sub(l.LastHandshake), 0)) + " ago"
			}
		}
		rows = append(rows, row)
	}
	h.render(w, code, h.panel.community, struct {
		pageData
		communityForm
		Overlay overlayView
		Members []memberRow
	}{h.pageFor(r, "Community", "/community"), form, v, rows})
}

// memberVersions maps the node ID of each box that announces its update
// agent in the catalog to the version it runs.
func (h *handler) memberVersions() map[string]string {
	m := map[string]string{}
	if h.cfg.catalog == nil {
		return m
	}
	c := h.cfg.catalog.current()
	if c == nil {
		return m
	}
	for _, rec := range c.Services(services.Filter{Type: updateType}) {
		if v := rec.TXT["run"]; v != "" {
			m[rec.OwnerID] = v
		}
	}
	return m
}

// formatBytes renders n with a binary unit, e.g. "512 B", "1.5 KiB".
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// writeOverlayMetrics writes the overlay's metrics: engine counters, paths
// and roster counters.
func writeOverlayMetrics(b *bytes.Buffer, v overlayView) {
	up := 0.0
	if v.Running {
		up = 1
	}
	writeMetric(b, "cloudbox_overlay_up", "gauge", "Whether the overlay runs (1) or not (0).", up)
	if !v.Running {
		return
	}
	e := v.Engine
	inOut := func(in, out uint64) []sample {
		return []sample{{[]string{"dir", "in"}, float64(in)}, {[]string{"dir", "out"}, float64(out)}}
	}
	writeFamily(b, "cloudbox_overlay_packets_total", "counter", "WireGuard messages received and sent on any path.",
		inOut(e.WireGuardPacketsIn, e.WireGuardPacketsOut)...)
	writeFamily(b, "cloudbox_overlay_bytes_total", "counter", "Bytes of WireGuard messages received and sent on any path.",
		inOut(e.WireGuardBytesIn, e.WireGuardBytesOut)...)
	writeFamily(b, "cloudbox_overlay_handshakes_total", "counter", "WireGuard handshake messages received and sent.",
		inOut(e.HandshakesIn, e.HandshakesOut)...)
	writeFamily(b, "cloudbox_overlay_relayed_packets_total", "counter", "This box's WireGuard messages that arrived or left through a relay.",
		inOut(e.RelayedPacketsIn, e.RelayedPacketsOut)...)
	writeFamily(b, "cloudbox_overlay_disco_messages_total", "counter", "Path discovery messages received (authenticated) and sent.",
		inOut(e.DiscoIn, e.DiscoOut)...)
	writeMetric(b, "cloudbox_overlay_relay_forwarded_packets_total", "counter", "Packets this box relayed between two other members.", float64(e.RelayForwardedPackets))
	writeMetric(b, "cloudbox_overlay_relay_forwarded_bytes_total", "counter", "Bytes this box relayed between two other members.", float64(e.RelayForwardedBytes))
	writeMetric(b, "cloudbox_overlay_tun_packets_total", "counter", "Decrypted packets written to the overlay interface.", float64(e.TUNPacketsOut))
	writeFamily(b, "cloudbox_overlay_lan_announces_total", "counter", "LAN discovery announces sent (out) and received, by what became of them.",
		sample{[]string{"result", "out"}, float64(e.LANAnnouncesOut)},
		sample{[]string{"result", "accepted"}, float64(e.LANAnnouncesAccepted)},
		sample{[]string{"result", "unknown"}, float64(e.LANAnnouncesUnknown)},
		sample{[]string{"result", "unusable"}, float64(e.LANAnnouncesUnusable)},
		sample{[]string{"result", "malformed"}, float64(e.LANAnnouncesMalformed)},
		sample{[]string{"result", "rate_limited"}, float64(e.LANAnnouncesRateLimited)})
	drops := []struct {
		reason string
		n      uint64
	}{
		{"malformed", e.DropMalformed},
		{"unknown_peer", e.DropUnknownPeer},
		{"relay_not_allowed", e.DropRelayNotAllowed},
		{"relay_no_path", e.DropRelayNoPath},
		{"disco_auth", e.DropDiscoAuth},
		{"disco_unsolicited", e.DropDiscoUnsolicited},
		{"send_error", e.SendErrors},
		{"handshake_rejected", e.HandshakesRejected},
	}
	var ds []sample
	for _, d := range drops {
		ds = append(ds, sample{[]string{"reason", d.reason}, float64(d.n)})
	}
	writeFamily(b, "cloudbox_overlay_drops_total", "counter", "Packets the overlay dropped, by reason.", ds...)
	writeMetric(b, "cloudbox_overlay_data_dropped_packets", "gauge",
		"Data messages WireGuard did not deliver (replayed, unauthenticated, disallowed source, or still queued); exact only when idle.",
		float64(e.DataDropped))

	peers, direct, relayed := 0, 0, 0
	for _, m := range v.Members {
		if m.Self {
			continue
		}
		peers++
		switch {
		case m.Live.Direct:
			direct++
		case m.Live.Via != "":
			relayed++
		}
	}
	writeMetric(b, "cloudbox_overlay_peers", "gauge", "Members of the community other than this box.", float64(peers))
	writeMetric(b, "cloudbox_overlay_peers_direct", "gauge", "Peers reached directly.", float64(direct))
	writeMetric(b, "cloudbox_overlay_peers_relayed", "gauge", "Peers reached through a relay.", float64(relayed))

	s := v.Roster
	writeMetric(b, "cloudbox_overlay_members", "gauge", "Members in the roster, this box included.", float64(s.Members))
	writeMetric(b, "cloudbox_overlay_roster_joins_accepted_total", "counter", "Boxes this box admitted to the community.", float64(s.JoinsAccepted))
	writeFamily(b, "cloudbox_overlay_roster_joins_refused_total", "counter", "Join requests this box refused, by reason.", reasonSamples(s.JoinsRefused)...)
	writeFamily(b, "cloudbox_overlay_roster_records_refused_total", "counter", "Roster records from other members refused, by reason.", reasonSamples(s.RecordsRefused)...)
	for _, c := range []struct {
		name, help string
		v          uint64
	}{
		{"snapshots_served", "Roster snapshots served to members.", s.SnapshotsServed},
		{"snapshots_fetched", "Roster snapshots fetched from members and applied.", s.SnapshotsFetched},
		{"fetches_failed", "Roster snapshot fetches that failed.", s.FetchesFailed},
		{"snapshots_refused", "Roster snapshots refused as a whole.", s.SnapshotsRefused},
		{"members_dropped", "Members removed because they were revoked or their certificate ended.", s.MembersDropped},
		{"revocation_lists", "Newer revocation lists adopted.", s.RevocationLists},
		{"renewals", "Certificates this box renewed with the root key.", s.Renewals},
		{"renewals_failed", "Certificates this box failed to renew.", s.RenewalsFailed},
		{"own_renewals", "Renewed certificates of this box adopted.", s.OwnRenewals},
		{"redemptions_omitted", "Redemption records left out of snapshots for size.", s.RedemptionsOmitted},
		{"persist_errors", "Failed writes of the roster state.", s.PersistErrors},
	} {
		writeMetric(b, "cloudbox_overlay_roster_"+c.name+"_total", "counter", c.help, float64(c.v))
	}
}

// rosterReasons are the reasons of roster.Stats, all reported even at zero
// so that every series exists from the start.
var rosterReasons = []roster.Reason{
	roster.ReasonMalformed, roster.ReasonMethod, roster.ReasonTooLarge, roster.ReasonRateLimited,
	roster.ReasonInvalid, roster.ReasonWrongCommunity, roster.ReasonExpired, roster.ReasonRevoked,
	roster.ReasonInviteUsed, roster.ReasonFull, roster.ReasonSelf, roster.ReasonFuture,
}

func reasonSamples(m map[roster.Reason]uint64) []sample {
	var out []sample
	for _, r := range rosterReasons {
		out = append(out, sample{[]string{"reason", string(r)}, float64(m[r])})
	}
	for _, r := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(rosterReasons, r) {
			out = append(out, sample{[]string{"reason", strings.ToLower(string(r))}, float64(m[r])})
		}
	}
	return out
}
