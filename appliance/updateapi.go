package appliance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cloudbox/cloudbox/services/update"
)

// errNoUpdate is the answer of the update endpoints of a daemon without
// the update component (handler tests).
const errNoUpdate = "the update component is not running on this box"

// updateInfo answers GET /api/v1/update.
func (h *handler) updateInfo(w http.ResponseWriter, r *http.Request) {
	if h.cfg.update == nil {
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: errNoUpdate})
		return
	}
	writeJSON(w, http.StatusOK, h.cfg.update.view(h.cfg.catalog, h.cfg.node.ID()))
}

// ReleaseUploadResult is the answer of POST /api/v1/update/releases.
type ReleaseUploadResult struct {
	Version  string `json:"version"`
	Complete bool   `json:"complete"`
	Error    string `json:"error,omitempty"`
}

// releaseUpload answers POST /api/v1/update/releases: the body is a release
// stream (`cloudbox update push`, update.WriteTar). The box verifies the
// signatures before it stores anything, then every chunk; a refused release
// leaves the box as it was.
func (h *handler) releaseUpload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, errorResponse{Error: fmt.Sprintf("method %s not allowed on %s; use POST", r.Method, r.URL.Path)})
		return
	}
	if h.cfg.update == nil || h.cfg.update.agent == nil {
		msg := errNoUpdate
		if h.cfg.update != nil {
			msg = h.cfg.update.problem
		}
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: msg})
		return
	}
	// A release is large: this request may take longer than the server's
	// read and write timeouts.
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(releaseUploadTime)
	rc.SetReadDeadline(deadline)
	rc.SetWriteDeadline(deadline)
	body := http.MaxBytesReader(w, r.Body, maxReleaseUpload)
	m, err := h.cfg.update.agent.Ingest(body)
	if err != nil {
		// Read what the client still sends, so that it gets the answer
		// instead of a reset connection in the middle of its upload.
		io.Copy(io.Discard, body)
	}
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, ReleaseUploadResult{Version: m.Version, Complete: true})
	case errors.Is(err, update.ErrIncomplete) && m != nil:
		writeJSON(w, http.StatusAccepted, ReleaseUploadResult{Version: m.Version, Error: err.Error()})
	case errors.Is(err, update.ErrUntrusted), errors.Is(err, update.ErrNotApplicable):
		writeJSON(w, http.StatusForbidden, errorResponse{Error: "release refused: " + err.Error()})
	case errors.Is(err, update.ErrMalformed), errors.Is(err, update.ErrChunkMismatch):
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: "release refused: " + err.Error()})
	default:
		writeJSON(w, http.StatusInternalServerError, errorResponse{Error: "storing the release failed: " + err.Error()})
	}
}

// updatesPage shows the Updates page.
func (h *handler) updatesPage(w http.ResponseWriter, r *http.Request) {
	var v UpdateInfo
	if h.cfg.update != nil {
		v = h.cfg.update.view(h.cfg.catalog, h.cfg.node.ID())
	} else {
		v.Problem = errNoUpdate
	}
	type row struct {
		update.ReleaseStatus
		SizeText string
		Percent  int
	}
	var rows []row
	if v.Agent != nil {
		for _, rs := range v.Agent.Releases {
			p := 100
			if rs.Chunks > 0 {
				p = rs.ChunksHeld * 100 / rs.Chunks
			}
			rows = append(rows, row{rs, formatBytes(uint64(rs.Size)), p})
		}
	}
	var traffic [3]string
	if v.Agent != nil {
		traffic = [3]string{formatBytes(uint64(v.Agent.Downloaded)), formatBytes(uint64(v.Agent.Uploaded)), formatBytes(uint64(v.Agent.Reused))}
	}
	h.render(w, http.StatusOK, h.panel.updates, struct {
		pageData
		Update   UpdateInfo
		Releases []row
		Traffic  [3]string
	}{h.pageFor(r, "Updates", "/updates"), v, rows, traffic})
}

// writeUpdateMetrics adds the update agent's counters to /metrics.
func (h *handler) writeUpdateMetrics(b *bytes.Buffer) {
	if h.cfg.update == nil || h.cfg.update.agent == nil {
		return
	}
	st := h.cfg.update.agent.Status()
	writeMetric(b, "cloudbox_update_fetched_bytes_total", "counter", "Release bytes fetched from peers.", float64(st.Downloaded))
	writeMetric(b, "cloudbox_update_served_bytes_total", "counter", "Release bytes served to peers.", float64(st.Uploaded))
	writeMetric(b, "cloudbox_update_reused_bytes_total", "counter", "Release bytes taken from what the box held instead of fetched.", float64(st.Reused))
	writeMetric(b, "cloudbox_update_releases", "gauge", "Releases held.", float64(len(st.Releases)))
	writeMetric(b, "cloudbox_update_rejected", "gauge", "Releases refused (by version and source) since the start.", float64(len(st.Rejected)))
}
