package roster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/overlay/membership"
)

// DefaultJoinTimeout bounds one join attempt.
const DefaultJoinTimeout = 15 * time.Second

// Doer sends HTTP requests for Join and Fetch: an *http.Client, or the
// plain HTTP client of the router profile (which has no net/http client,
// see internal/plainhttp). Required: nil is an error.
type Doer interface {
	Do(req *http.Request) (*http.Response, error)
}

// maxErrorBody bounds the JSON error body read from a member.
const maxErrorBody = 4 << 10

// StatusError is a member's refusal of a request: the HTTP status and the
// message of its JSON error body. It unwraps to ErrMalformed (400, 413),
// ErrRefused (403), membership.ErrInviteUsed (409) or ErrRateLimited (429).
type StatusError struct {
	StatusCode int
	Message    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

func (e *StatusError) Unwrap() error {
	switch e.StatusCode {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return ErrMalformed
	case http.StatusForbidden:
		return ErrRefused
	case http.StatusConflict:
		return membership.ErrInviteUsed
	case http.StatusTooManyRequests:
		return ErrRateLimited
	}
	return nil
}

// final reports whether every member would give the same answer, so that
// trying the next bootstrap is pointless or, for a revoked or used
// invitation, wrong.
func (e *StatusError) final() bool {
	switch e.StatusCode {
	case http.StatusBadRequest, http.StatusForbidden, http.StatusConflict, http.StatusRequestEntityTooLarge:
		return true
	}
	return false
}

// bootstrapErrors lists why each bootstrap failed.
type bootstrapErrors []error

func (e bootstrapErrors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (e bootstrapErrors) Unwrap() []error { return e }

// Join asks the members at bootstrap (base URLs such as
// "http://192.0.2.1:51820"), in order, to admit this box with chain, the
// membership it issued with its invitation (membership.Invitation.Issue),
// and endpoints (the first MaxEndpoints valid ones are sent). It returns the
// snapshot of the first member that accepts: pass it to Apply of the
// roster this box creates next.
//
// Each attempt is bounded by DefaultJoinTimeout (and by the client's own
// timeout, if it has one). A network error, a 429 or
// a 5xx moves on to the next bootstrap; a refusal that every member would
// repeat (400, 403, 409, 413) stops. The error names every bootstrap that
// failed and why, and wraps the StatusError of a refusal: test with
// errors.Is for ErrRefused, membership.ErrInviteUsed or ErrRateLimited.
func Join(ctx context.Context, client Doer, bootstrap []string, chain *membership.Membership, endpoints []netip.AddrPort) (*Snapshot, error) {
	if len(bootstrap) == 0 {
		return nil, fmt.Errorf("joining: %w", ErrNoBootstrap)
	}
	body, err := (&JoinRequest{Membership: chain, Endpoints: cleanEndpoints(endpoints)}).Encode()
	if err != nil {
		return nil, fmt.Errorf("joining: %w", err)
	}
	if client == nil {
		return nil, errors.New("joining: no HTTP client")
	}
	var errs bootstrapErrors
	for _, base := range bootstrap {
		s, err := joinOne(ctx, client, DefaultJoinTimeout, base, body, chain.Certificate.CommunityID)
		if err == nil {
			return s, nil
		}
		errs = append(errs, fmt.Errorf("bootstrap %s: %w", base, err))
		var se *StatusError
		if errors.As(err, &se) && se.final() || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("joining through %d of %d bootstraps failed: %w", len(errs), len(bootstrap), errs)
}

func joinOne(ctx context.Context, client Doer, timeout time.Duration, base string, body []byte, id membership.CommunityID) (*Snapshot, error) {
	u, err := endpointURL(base, JoinPath)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	s, err := do(client, req)
	if err != nil {
		return nil, err
	}
	if s.Community != id {
		return nil, fmt.Errorf("member answered for community %s, not %s: %w", s.Community, id, membership.ErrWrongCommunity)
	}
	return s, nil
}

// Fetch gets the snapshot of the member at baseURL (GET SnapshotPath). The
// daemon's fetch function for Run calls it with the member's overlay
// address, such as "http://[fd12:3456:789a::1]:8080". ctx bounds the
// request.
func Fetch(ctx context.Context, client Doer, baseURL string) (*Snapshot, error) {
	s, err := fetch(ctx, client, baseURL)
	if err != nil {
		return nil, fmt.Errorf("fetching snapshot from %s: %w", baseURL, err)
	}
	return s, nil
}

func fetch(ctx context.Context, client Doer, baseURL string) (*Snapshot, error) {
	u, err := endpointURL(baseURL, SnapshotPath)
	if err != nil {
		return nil, err
	}
	if client == nil {
		return nil, errors.New("no HTTP client")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return do(client, req)
}

// endpointURL appends path to a base URL, which must be http or https.
func endpointURL(base, path string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("base URL %q: want http://host:port or https://host:port", base)
	}
	return u.JoinPath(path).String(), nil
}

// do sends req and decodes the snapshot it answers with.
func do(client Doer, req *http.Request) (*Snapshot, error) {
	req.Header.Set("Accept", snapshotType+", application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxSnapshotSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading snapshot: %w", err)
	}
	return DecodeSnapshot(b)
}

func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody)) // the status says enough without it
	var v struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &v) == nil && v.Error != "" {
		msg = v.Error
	}
	if msg == "" {
		msg = "no reason given"
	}
	return &StatusError{StatusCode: resp.StatusCode, Message: msg}
}
