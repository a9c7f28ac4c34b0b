package voip

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// Limits of rooms.
const (
	// MaxRoomSize is the most participants of a room; every participant
	// receives the others on as many receive-only audio transceivers,
	// which its offer must carry (MaxRoomSize-1 of them).
	MaxRoomSize = 8
	maxRooms    = 64
)

// Rooms is a selective forwarding unit for conference rooms: each
// participant sends its audio once, to the box, which forwards every
// participant's packets to every other one (no mixing, no transcoding:
// Opus passes through). The browser's offer carries one sending audio
// track and MaxRoomSize-1 receive-only audio transceivers, so participants
// joining later need no renegotiation: the box puts each new voice on a
// free transceiver of everyone else. Safe for concurrent use.
type Rooms struct {
	api *webrtc.API
	log *slog.Logger

	mu     sync.Mutex
	rooms  map[string]*room
	closed bool
}

type room struct {
	name    string
	created time.Time
	members []*participant
}

// participant is one browser in a room.
type participant struct {
	id   string
	name string
	pc   *webrtc.PeerConnection
	// slots are the tracks towards this participant, one per transceiver;
	// from says whose voice each carries ("" when free).
	slots []*webrtc.TrackLocalStaticRTP

	mu   sync.Mutex
	from []string

	sent, received atomic.Uint64 // packets forwarded from it, to it
}

// NewRooms makes the rooms of a box; their media goes through mux (the
// ICE UDP mux the Phones use as well).
func NewRooms(mux ice.UDPMux, logger *slog.Logger) *Rooms {
	return &Rooms{api: newRoomsAPI(mux), log: orDiscard(logger), rooms: map[string]*room{}}
}

// Join adds a participant called name to room (made on first join) with
// the browser's offer, and returns the participant's id and the answer.
func (rs *Rooms) Join(roomName, name, offer string) (id, answer string, err error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	p := &participant{id: hex.EncodeToString(b[:]), name: name}
	rs.mu.Lock()
	if rs.closed {
		rs.mu.Unlock()
		return "", "", ErrClosed
	}
	r := rs.rooms[roomName]
	if r == nil {
		if len(rs.rooms) >= maxRooms {
			rs.mu.Unlock()
			return "", "", fmt.Errorf("too many rooms (%d) on this box", maxRooms)
		}
		r = &room{name: roomName, created: time.Now()}
		rs.rooms[roomName] = r
	}
	if len(r.members) >= MaxRoomSize {
		rs.mu.Unlock()
		return "", "", fmt.Errorf("room %q is full (%d participants)", roomName, MaxRoomSize)
	}
	rs.mu.Unlock()

	pc, err := rs.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", "", fmt.Errorf("creating peer connection: %w", err)
	}
	p.pc = pc
	fail := func(err error) (string, string, error) {
		_ = pc.Close()
		rs.leave(roomName, p.id)
		return "", "", err
	}
	// One track towards the browser per other participant it can hear,
	// added before the offer is read so that they take its receive-only
	// transceivers (pion matches them by kind and direction).
	var tracks []*webrtc.TrackLocalStaticRTP
	for i := range MaxRoomSize - 1 {
		t, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
			fmt.Sprintf("slot%d", i), "room-"+p.id)
		if err != nil {
			return fail(err)
		}
		if _, err := pc.AddTrack(t); err != nil {
			return fail(err)
		}
		tracks = append(tracks, t)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(fmt.Errorf("%w: room offer: %v", ErrMalformed, err))
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() != webrtc.RTPCodecTypeAudio {
			return
		}
		rs.forward(roomName, p, tr)
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed || s == webrtc.PeerConnectionStateDisconnected {
			go rs.Leave(roomName, p.id)
		}
	})
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(fmt.Errorf("answering (the browser must offer Opus audio): %w", err))
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return fail(err)
	}
	select {
	case <-gathered:
	case <-time.After(sdpTimeout):
	}
	// The usable slots: tracks on a transceiver that sends.
	p.mu.Lock()
	for _, tr := range pc.GetTransceivers() {
		d := tr.Direction()
		if tr.Sender() == nil || tr.Mid() == "" || (d != webrtc.RTPTransceiverDirectionSendonly && d != webrtc.RTPTransceiverDirectionSendrecv) {
			continue
		}
		for _, t := range tracks {
			if tr.Sender().Track() == t {
				p.slots = append(p.slots, t)
			}
		}
	}
	p.from = make([]string, len(p.slots))
	p.mu.Unlock()
	rs.mu.Lock()
	if r := rs.rooms[roomName]; r != nil && len(r.members) < MaxRoomSize && !rs.closed {
		r.members = append(r.members, p)
		rs.mu.Unlock()
	} else {
		rs.mu.Unlock()
		return fail(fmt.Errorf("room %q is full or closed", roomName))
	}
	return p.id, pc.LocalDescription().SDP, nil
}

// forward sends src's packets to every other participant of the room.
func (rs *Rooms) forward(roomName string, src *participant, tr *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		rs.mu.Lock()
		r := rs.rooms[roomName]
		var others []*participant
		if r != nil {
			others = slices.Clone(r.members)
		}
		rs.mu.Unlock()
		for _, o := range others {
			if o == src {
				continue
			}
			if t := o.slotFor(src.id); t != nil {
				if _, err := t.Write(buf[:n]); err == nil {
					o.received.Add(1)
					src.sent.Add(1)
				}
			}
		}
	}
}

// slotFor returns the track towards o that carries from's voice, taking a
// free one on first use.
func (o *participant) slotFor(from string) *webrtc.TrackLocalStaticRTP {
	o.mu.Lock()
	defer o.mu.Unlock()
	free := -1
	for i, f := range o.from {
		if f == from {
			return o.slots[i]
		}
		if f == "" && free < 0 {
			free = i
		}
	}
	if free < 0 {
		return nil
	}
	o.from[free] = from
	return o.slots[free]
}

// Leave removes a participant.
func (rs *Rooms) Leave(roomName, id string) error {
	p := rs.leave(roomName, id)
	if p == nil {
		return fmt.Errorf("no participant %q in room %q", id, roomName)
	}
	return p.pc.Close()
}

func (rs *Rooms) leave(roomName, id string) *participant {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.rooms[roomName]
	if r == nil {
		return nil
	}
	i := slices.IndexFunc(r.members, func(p *participant) bool { return p.id == id })
	if i < 0 {
		return nil
	}
	p := r.members[i]
	r.members = slices.Delete(r.members, i, i+1)
	for _, o := range r.members { // free the slots that carried it
		o.mu.Lock()
		for k, f := range o.from {
			if f == id {
				o.from[k] = ""
			}
		}
		o.mu.Unlock()
	}
	if len(r.members) == 0 {
		delete(rs.rooms, roomName)
	}
	return p
}

// RoomInfo is a room in progress, for the API.
type RoomInfo struct {
	Name         string            `json:"name"`
	Participants []ParticipantInfo `json:"participants"`
}

// ParticipantInfo is a participant, with the packets forwarded from and
// to it.
type ParticipantInfo struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Sent     uint64 `json:"sent"`
	Received uint64 `json:"received"`
}

// List returns the rooms in progress.
func (rs *Rooms) List() []RoomInfo {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := []RoomInfo{}
	for _, r := range rs.rooms {
		ri := RoomInfo{Name: r.name}
		for _, p := range r.members {
			ri.Participants = append(ri.Participants, ParticipantInfo{ID: p.id, Name: p.name, Sent: p.sent.Load(), Received: p.received.Load()})
		}
		out = append(out, ri)
	}
	slices.SortFunc(out, func(a, b RoomInfo) int {
		if a.Name < b.Name {
			return -1
		}
		return 1
	})
	return out
}

// Close ends every room.
func (rs *Rooms) Close() error {
	rs.mu.Lock()
	rs.closed = true
	var all []*participant
	for _, r := range rs.rooms {
		all = append(all, r.members...)
	}
	rs.rooms = map[string]*room{}
	rs.mu.Unlock()
	var errs []error
	for _, p := range all {
		errs = append(errs, p.pc.Close())
	}
	return errors.Join(errs...)
}
