package roster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/cloudbox/cloudbox/overlay/membership"
)

// Paths the handlers serve.
const (
	JoinPath     = "/overlay/v1/join"
	SnapshotPath = "/overlay/v1/snapshot"
)

// snapshotType is the media type of an encoded Snapshot.
const snapshotType = "application/octet-stream"

// Handler serves the join endpoint (POST JoinPath) and the snapshot of this
// box (GET SnapshotPath). The snapshot handler does not authenticate its
// callers: serve Handler only on the overlay address, where WireGuard
// already did (every packet there comes from a member's node key), and
// JoinHandler alone on the underlay.
func (r *Roster) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(JoinPath, r.serveJoin)
	mux.HandleFunc(SnapshotPath, r.serveSnapshot)
	mux.HandleFunc("/", serveNotFound)
	return mux
}

// JoinHandler serves only the join endpoint (POST JoinPath), for the
// underlay where new boxes without a tunnel reach this box. Joins are
// rate-limited per source address (Config.JoinEvery, Config.JoinBurst).
func (r *Roster) JoinHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(JoinPath, r.serveJoin)
	mux.HandleFunc("/", serveNotFound)
	return mux
}

func serveNotFound(w http.ResponseWriter, req *http.Request) {
	writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint %s; try POST %s or GET %s", req.URL.Path, JoinPath, SnapshotPath))
}

// writeError answers with a JSON error.
func writeError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg}) // a string always encodes
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeSnapshot(w http.ResponseWriter, b []byte) {
	h := w.Header()
	h.Set("Content-Type", snapshotType)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func (r *Roster) serveSnapshot(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; use GET", req.Method))
		return
	}
	b, err := r.encodeSnapshot()
	if err != nil {
		r.log.Error("encoding snapshot failed", "err", err)
		writeError(w, http.StatusInternalServerError, "this box cannot encode its roster; see its log")
		return
	}
	r.stats.add(&r.stats.snapshotsServed, 1)
	writeSnapshot(w, b)
}

func (r *Roster) serveJoin(w http.ResponseWriter, req *http.Request) {
	refuse := func(status int, why Reason, msg string) {
		r.stats.refuseJoin(why)
		r.log.Debug("join refused", "remote", req.RemoteAddr, "reason", string(why), "msg", msg)
		writeError(w, status, msg)
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		refuse(http.StatusMethodNotAllowed, ReasonMethod, fmt.Sprintf("method %s not allowed; use POST", req.Method))
		return
	}
	now := r.now()
	src, _ := netip.ParseAddrPort(req.RemoteAddr)
	if ok, retry := r.limiter.allow(src.Addr(), now); !ok {
		secs := int(math.Ceil(retry.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		refuse(http.StatusTooManyRequests, ReasonRateLimited, fmt.Sprintf("too many join attempts from %v; try again in %d s", src.Addr(), secs))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxJoinRequestSize))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			refuse(http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("join request over %d bytes", MaxJoinRequestSize))
			return
		}
		refuse(http.StatusBadRequest, ReasonMalformed, fmt.Sprintf("reading join request: %v", err))
		return
	}
	jr, err := DecodeJoinRequest(body)
	if err != nil {
		refuse(http.StatusBadRequest, ReasonMalformed, err.Error())
		return
	}
	if err := r.join(jr, now); err != nil {
		why := reasonOf(err)
		if errors.Is(err, errSelfJoin) {
			why = ReasonSelf
		}
		status, hint := joinStatus(why)
		refuse(status, why, err.Error()+hint)
		return
	}
	r.stats.add(&r.stats.joinsAccepted, 1)
	r.log.Info("member joined", "node", jr.Membership.NodeID(), "name", jr.Membership.Certificate.Name, "remote", req.RemoteAddr)
	b, err := r.encodeSnapshot()
	if err != nil {
		r.log.Error("encoding snapshot failed", "err", err)
		writeError(w, http.StatusInternalServerError, "joined, but this box cannot encode its roster; try again later")
		return
	}
	writeSnapshot(w, b)
}

// joinStatus maps the reason of a refused join to the HTTP status and a
// hint for the person setting up the new box.
func joinStatus(why Reason) (int, string) {
	switch why {
	case ReasonMalformed:
		return http.StatusBadRequest, ""
	case ReasonInviteUsed:
		return http.StatusConflict, "; each invitation admits one box: ask an administrator for a new invitation"
	case ReasonSelf:
		return http.StatusConflict, ""
	case ReasonExpired:
		return http.StatusForbidden, "; check the clock of the new box, or ask an administrator for a new invitation"
	case ReasonRevoked:
		return http.StatusForbidden, "; an administrator revoked it"
	case ReasonFull:
		return http.StatusServiceUnavailable, ""
	}
	return http.StatusForbidden, "; the invitation is not valid for this community"
}

var errSelfJoin = errors.New("the node key is the answering box's own")

// join admits a new box: its chain must verify and, if issued with an
// invitation, be redeemed here (membership.Redemptions.Redeem: not expired,
// not used by another node key). A member with a chain the root key signed
// may join again, to fetch the roster after a long absence.
func (r *Roster) join(jr *JoinRequest, now time.Time) error {
	m := jr.Membership
	key := m.Certificate.NodeKey
	if key == r.selfKey {
		return fmt.Errorf("joining node %s: %w", m.NodeID(), errSelfJoin)
	}
	raw, err := m.MarshalBinary()
	if err != nil {
		return fmt.Errorf("joining: %w: %w", ErrMalformed, err)
	}
	var res result
	r.mu.Lock()
	if _, ok := r.records[key]; !ok && len(r.records) >= r.maxMembs {
		r.mu.Unlock()
		return fmt.Errorf("joining node %s: %w: %d members", m.NodeID(), ErrFull, len(r.records))
	}
	if m.Delegation != nil {
		_, used := r.redemptions.Lookup(m.Delegation.InviteID)
		err = r.redemptions.Redeem(r.c, m, now, r.revocations)
		res.redemptions = err == nil && !used
	} else {
		err = membership.VerifyMembership(r.c, m, now, r.revocations)
	}
	if err == nil {
		in := incoming{key: key, chain: raw, m: m, eps: jr.Endpoints, updated: now, relay: jr.RelayOK}
		err = r.mergeLocked(&in, now, &res)
	}
	r.mu.Unlock()
	r.finish(res) // errors are logged and counted; the state in memory holds
	if err != nil {
		return fmt.Errorf("joining: %w", err)
	}
	return nil
}
