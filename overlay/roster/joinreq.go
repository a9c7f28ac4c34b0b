package roster

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/cloudbox/cloudbox/overlay/membership"
)

// JoinRequest is what a new box sends to a member to join: the chain it
// issued itself with its invitation (see membership.Invitation.Issue) and
// where it can be reached. Its encoding is described in the package
// comment.
type JoinRequest struct {
	// Membership is the new box's chain, at most
	// membership.MaxMembershipSize bytes encoded.
	Membership *membership.Membership

	// Endpoints are at most MaxEndpoints underlay endpoints of the new
	// box, with the limits of Record.Endpoints.
	Endpoints []netip.AddrPort

	// RelayOK says the new box offers to relay.
	RelayOK bool
}

const joinRequestVersion = 1

// joinRequestV1 is the JSON form of a JoinRequest.
type joinRequestV1 struct {
	Version    int      `json:"version"`
	Membership string   `json:"membership"`
	Endpoints  []string `json:"endpoints"`
	RelayOK    bool     `json:"relay,omitempty"`
}

// Encode returns the JSON encoding of req.
func (req *JoinRequest) Encode() ([]byte, error) {
	if req.Membership == nil {
		return nil, fmt.Errorf("encoding join request: %w: no membership", ErrMalformed)
	}
	chain, err := req.Membership.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encoding join request: %w: %w", ErrMalformed, err)
	}
	if err := checkEndpoints(req.Endpoints); err != nil {
		return nil, fmt.Errorf("encoding join request: %w: %w", ErrMalformed, err)
	}
	v := joinRequestV1{
		Version:    joinRequestVersion,
		Membership: base64.StdEncoding.EncodeToString(chain),
		Endpoints:  make([]string, len(req.Endpoints)),
		RelayOK:    req.RelayOK,
	}
	for i, ap := range req.Endpoints {
		v.Endpoints[i] = ap.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding join request: %w", err)
	}
	return b, nil
}

// DecodeJoinRequest parses a join request. It accepts exactly one JSON
// object with the fields of the package comment and nothing else, at most
// MaxJoinRequestSize bytes; anything else fails with ErrMalformed and a
// message naming the field. It verifies no signature.
func DecodeJoinRequest(b []byte) (*JoinRequest, error) {
	req, err := decodeJoinRequest(b)
	if err != nil {
		return nil, fmt.Errorf("decoding join request: %w: %w", ErrMalformed, err)
	}
	return req, nil
}

func decodeJoinRequest(b []byte) (*JoinRequest, error) {
	if len(b) > MaxJoinRequestSize {
		return nil, fmt.Errorf("%d bytes, at most %d allowed", len(b), MaxJoinRequestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var v joinRequestV1
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("parsing json: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("parsing json: trailing data after the object")
	}
	if v.Version != joinRequestVersion {
		return nil, fmt.Errorf(`field "version": %d, want %d`, v.Version, joinRequestVersion)
	}
	if len(v.Membership) > base64.StdEncoding.EncodedLen(membership.MaxMembershipSize) {
		return nil, fmt.Errorf(`field "membership": %d characters, at most %d allowed`,
			len(v.Membership), base64.StdEncoding.EncodedLen(membership.MaxMembershipSize))
	}
	chain, err := base64.StdEncoding.Strict().DecodeString(v.Membership)
	if err != nil {
		return nil, fmt.Errorf(`field "membership": not standard base64: %w`, err)
	}
	req := &JoinRequest{Membership: new(membership.Membership), RelayOK: v.RelayOK}
	if err := req.Membership.UnmarshalBinary(chain); err != nil {
		return nil, fmt.Errorf(`field "membership": %w`, err)
	}
	if len(v.Endpoints) > MaxEndpoints {
		return nil, fmt.Errorf(`field "endpoints": %d endpoints, at most %d allowed`, len(v.Endpoints), MaxEndpoints)
	}
	for _, s := range v.Endpoints {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return nil, fmt.Errorf(`field "endpoints": %w`, err)
		}
		req.Endpoints = append(req.Endpoints, ap)
	}
	if err := checkEndpoints(req.Endpoints); err != nil {
		return nil, fmt.Errorf(`field "endpoints": %w`, err)
	}
	return req, nil
}
