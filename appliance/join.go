package appliance

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// maxJoinRequest bounds the body of a join request; tokens are about 400
// bytes.
const maxJoinRequest = 8 << 10

// joinRequestBody is the body of POST /api/v1/overlay/join.
type joinRequestBody struct {
	Token string `json:"token"`
}

// joinResponse is the answer of POST /api/v1/overlay/join.
type joinResponse struct {
	Joining string `json:"joining"`
	State   string `json:"state"`
}

// joinStatus maps a requestJoin error to an HTTP status.
func joinStatus(err error) int {
	switch {
	case errors.Is(err, errAlreadyMember):
		return http.StatusConflict
	case errors.Is(err, errOverlayDisabled):
		return http.StatusServiceUnavailable
	case strings.HasPrefix(err.Error(), "join token"):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError // no TUN device, no capability
}

func (h *handler) requestJoin(token string) (string, error) {
	if h.cfg.overlay == nil {
		return "", errOverlayDisabled
	}
	if strings.TrimSpace(token) == "" {
		return "", errors.New("join token: empty; paste the invitation that `cloudbox invite` printed on a member")
	}
	return h.cfg.overlay.requestJoin(token)
}

// overlayJoin starts joining a community with an invitation, the API form
// of --join: POST {"token": "cloudbox-invite:..."}. It answers 202 once the
// token is checked; GET /api/v1/status tells how the join goes. Only
// administrators may ask; a member refuses with 409.
func (h *handler) overlayJoin(w http.ResponseWriter, r *http.Request) {
	var req joinRequestBody
	if !decodeJSONPost(w, r, maxJoinRequest, &req, `{"token": "cloudbox-invite:..."}`) {
		return
	}
	name, err := h.requestJoin(req.Token)
	if err != nil {
		writeJSON(w, joinStatus(err), errorResponse{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusAccepted, joinResponse{Joining: name, State: h.overlayView().State})
}

// communityJoin is the join form of the community page. It redirects to
// the page, which shows the join's progress, or shows the page again with
// the error and the token.
func (h *handler) communityJoin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, fmt.Sprintf("method %s not allowed; use POST", r.Method), http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxJoinRequest)
	token := r.PostFormValue("token")
	if _, err := h.requestJoin(token); err != nil {
		h.communityPage(w, r, joinStatus(err), communityForm{JoinError: err.Error(), Token: token})
		return
	}
	http.Redirect(w, r, "/community", http.StatusSeeOther)
}
