package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
)

// ServeWHIP answers a request to the WHIP endpoint of stream name (RFC
// 9725 §4.2): a POST with an SDP offer (Content-Type application/sdp)
// gets 201 Created with the answer and, in Location, sessionBase followed
// by the session ID (the resource to DELETE). The caller has authorized
// the request.
func (s *Server) ServeWHIP(w http.ResponseWriter, r *http.Request, name, sessionBase string, opt PublishOptions) {
	offer, ok := readOffer(w, r)
	if !ok {
		return
	}
	a, err := s.Publish(r.Context(), name, offer, opt)
	writeAnswer(w, a, sessionBase, err)
}

// ServeWHEP answers a request to the WHEP endpoint of stream name, like
// ServeWHIP: a POST with an SDP offer that receives.
func (s *Server) ServeWHEP(w http.ResponseWriter, r *http.Request, name, sessionBase string, opt PlayOptions) {
	offer, ok := readOffer(w, r)
	if !ok {
		return
	}
	a, err := s.Play(r.Context(), name, offer, opt)
	writeAnswer(w, a, sessionBase, err)
}

// ServeSession answers a request to a session resource (RFC 9725 §4.3,
// §4.4): DELETE ends the session; PATCH (trickle ICE, ICE restart) is not
// supported, as answers carry every candidate.
func (s *Server) ServeSession(w http.ResponseWriter, r *http.Request, id string) {
	switch r.Method {
	case http.MethodDelete:
		if err := s.CloseSession(id); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	case http.MethodOptions:
		w.Header().Set("Allow", "DELETE, OPTIONS")
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "DELETE, OPTIONS")
		http.Error(w, fmt.Sprintf("method %s not allowed on a session; DELETE ends it (no trickle ICE: answers carry every candidate)", r.Method), http.StatusMethodNotAllowed)
	}
}

// readOffer reads the SDP offer of a POST; it answers a wrong method,
// content type or size itself and then returns false.
func readOffer(w http.ResponseWriter, r *http.Request) (string, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return "", false
		}
		http.Error(w, fmt.Sprintf("method %s not allowed; POST an SDP offer", r.Method), http.StatusMethodNotAllowed)
		return "", false
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/sdp" {
		http.Error(w, "send the SDP offer with Content-Type: application/sdp", http.StatusUnsupportedMediaType)
		return "", false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSDPSize))
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		http.Error(w, fmt.Sprintf("SDP offer over %d bytes", MaxSDPSize), http.StatusRequestEntityTooLarge)
		return "", false
	}
	if err != nil {
		http.Error(w, "reading the offer: "+err.Error(), http.StatusBadRequest)
		return "", false
	}
	return string(body), true
}

func writeAnswer(w http.ResponseWriter, a Answer, sessionBase string, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", sessionBase+a.Session)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, a.SDP)
}

// StatusOf maps an error of the Server to an HTTP status code.
func StatusOf(err error) int {
	switch {
	case errors.Is(err, ErrBadOffer), errors.Is(err, ErrBadName):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnsupportedCodec):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrExists):
		return http.StatusConflict
	case errors.Is(err, ErrTooMany), errors.Is(err, ErrClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), StatusOf(err))
}
