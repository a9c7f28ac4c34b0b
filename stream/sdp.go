package stream

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pion/sdp/v3"
)

// Limits of an offer.
const (
	// MaxSDPSize bounds an SDP offer or answer in bytes.
	MaxSDPSize = 32 << 10
	// maxMedia bounds the media sections of an offer.
	maxMedia = 4
)

// offerSummary is what checkOffer learns from an offer.
type offerSummary struct {
	audio, video int // media sections usable in the wanted direction
}

// checkOffer parses an SDP offer (RFC 8866) and checks what a WHIP
// (publish) or WHEP (play) session needs: ICE credentials and a DTLS
// fingerprint (RFC 8839, RFC 8842), audio or video sections that send
// (publish) or receive (play), and a codec this server passes through.
// Errors wrap ErrBadOffer or ErrUnsupportedCodec and say what is wrong.
func checkOffer(offer string, publish bool) (offerSummary, error) {
	var sum offerSummary
	if len(offer) == 0 {
		return sum, fmt.Errorf("%w: empty body; send an SDP offer", ErrBadOffer)
	}
	if len(offer) > MaxSDPSize {
		return sum, fmt.Errorf("%w: offer over %d bytes", ErrBadOffer, MaxSDPSize)
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return sum, fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	if len(d.MediaDescriptions) == 0 {
		return sum, fmt.Errorf("%w: no media sections", ErrBadOffer)
	}
	if len(d.MediaDescriptions) > maxMedia {
		return sum, fmt.Errorf("%w: %d media sections, at most %d", ErrBadOffer, len(d.MediaDescriptions), maxMedia)
	}
	_, sessUfrag := d.Attribute("ice-ufrag")
	_, sessFP := d.Attribute("fingerprint")
	var problems []string
	for _, m := range d.MediaDescriptions {
		kind := m.MediaName.Media
		if kind != "audio" && kind != "video" {
			continue
		}
		if m.MediaName.Port.Value == 0 {
			continue
		}
		if _, ok := m.Attribute("ice-ufrag"); !ok && !sessUfrag {
			return sum, fmt.Errorf("%w: %s section without ice-ufrag", ErrBadOffer, kind)
		}
		if _, ok := m.Attribute("fingerprint"); !ok && !sessFP {
			return sum, fmt.Errorf("%w: %s section without a DTLS fingerprint", ErrBadOffer, kind)
		}
		dir := direction(m)
		if publish && dir != "sendonly" && dir != "sendrecv" || !publish && dir != "recvonly" && dir != "sendrecv" {
			continue
		}
		usable, why := false, ""
		for _, f := range m.MediaName.Formats {
			enc := rtpmapEncoding(m, f)
			if enc == "" {
				continue
			}
			switch strings.ToLower(enc) {
			case "rtx", "red", "ulpfec", "flexfec-03", "telephone-event", "cn":
				continue
			}
			if p := codecProblem(enc); p == "" {
				usable = true
			} else if why == "" {
				why = p
			}
		}
		if !usable {
			if why == "" {
				why = "no codec offered"
			}
			problems = append(problems, kind+": "+why)
			continue
		}
		if kind == "audio" {
			sum.audio++
		} else {
			sum.video++
		}
	}
	if sum.audio+sum.video == 0 {
		if len(problems) > 0 {
			return sum, fmt.Errorf("%w: %s", ErrUnsupportedCodec, strings.Join(problems, "; "))
		}
		want := "send (sendonly) to publish"
		if !publish {
			want = "receive (recvonly) to play"
		}
		return sum, fmt.Errorf("%w: no audio or video section that can %s", ErrBadOffer, want)
	}
	return sum, nil
}

// rtpmapEncoding returns the encoding name of payload type format in m
// (a=rtpmap, RFC 8866 §6.6).
func rtpmapEncoding(m *sdp.MediaDescription, format string) string {
	for _, a := range m.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		pt, rest, ok := strings.Cut(a.Value, " ")
		if !ok || pt != format {
			continue
		}
		enc, _, _ := strings.Cut(rest, "/")
		return enc
	}
	return ""
}

// countSections counts the audio and video sections of an SDP answer with
// one of the directions dirs (a=sendonly...; sendrecv when none is given)
// and a port other than 0.
func countSections(answer string, dirs ...string) (int, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(answer); err != nil {
		return 0, fmt.Errorf("parsing answer: %w", err)
	}
	n := 0
	for _, m := range d.MediaDescriptions {
		if (m.MediaName.Media != "audio" && m.MediaName.Media != "video") || m.MediaName.Port.Value == 0 {
			continue
		}
		dir := direction(m)
		if slices.Contains(dirs, dir) {
			n++
		}
	}
	return n, nil
}

// direction returns the direction attribute of m (RFC 8866 §6.7),
// "sendrecv" when it has none.
func direction(m *sdp.MediaDescription) string {
	for _, a := range m.Attributes {
		switch a.Key {
		case "sendonly", "recvonly", "inactive", "sendrecv":
			return a.Key
		}
	}
	return "sendrecv"
}
