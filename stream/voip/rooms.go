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
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Limits of rooms.
const (
	// MaxRoomSize is the most participants of a room; every participant
	// receives the others on as many receive-only audio (and video)
	// transceivers, which its offer must carry (MaxRoomSize-1 of each).
	MaxRoomSize = 8
	maxRooms    = 64
	// pliInterval is the least time between two keyframe requests sent to
	// one participant's camera.
	pliInterval = 500 * time.Millisecond
)

// Rooms is a selective forwarding unit for conference rooms: each
// participant sends its audio, and its video if it has a camera, once, to
// the box, which forwards every participant's packets to every other one
// (no mixing, no transcoding: Opus and VP8 pass through). The browser's
// offer carries a sending audio track, an optional sending video track,
// and MaxRoomSize-1 receive-only audio and video transceivers, so
// participants joining later need no renegotiation: the box puts each new
// voice and picture on a free transceiver of everyone else, and asks the
// sender for a keyframe when a picture gets a new viewer or a viewer asks
// (PLI). Safe for concurrent use.
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
	// audio and video are the tracks towards this participant.
	audio, video slotSet
	// camera is the SSRC of its video, for keyframe requests (0: none).
	camera  atomic.Uint32
	lastPLI atomic.Int64 // UnixNano of the last keyframe request to it

	sent, received           atomic.Uint64 // audio packets forwarded from it, to it
	videoSent, videoReceived atomic.Uint64 // video packets
}

// slotSet is the tracks of one kind towards a participant, one per
// transceiver, and whose media each carries ("" when free).
type slotSet struct {
	tracks []*webrtc.TrackLocalStaticRTP
	mu     sync.Mutex
	from   []string
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
	// One track of each kind towards the browser per other participant,
	// added before the offer is read so that they take its receive-only
	// transceivers (pion matches them by kind and direction).
	var tracks []*webrtc.TrackLocalStaticRTP
	for _, kind := range []webrtc.RTPCodecCapability{
		{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
		{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
	} {
		for i := range MaxRoomSize - 1 {
			t, err := webrtc.NewTrackLocalStaticRTP(kind, fmt.Sprintf("%s%d", kind.MimeType[:5], i), "room-"+p.id)
			if err != nil {
				return fail(err)
			}
			if _, err := pc.AddTrack(t); err != nil {
				return fail(err)
			}
			tracks = append(tracks, t)
		}
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(fmt.Errorf("%w: room offer: %v", ErrMalformed, err))
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			p.camera.Store(uint32(tr.SSRC()))
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
	// The usable slots: tracks on a transceiver that sends. A viewer's
	// keyframe requests go to the camera its video slot carries.
	for _, tr := range pc.GetTransceivers() {
		d := tr.Direction()
		if tr.Sender() == nil || tr.Mid() == "" || (d != webrtc.RTPTransceiverDirectionSendonly && d != webrtc.RTPTransceiverDirectionSendrecv) {
			continue
		}
		for _, t := range tracks {
			if tr.Sender().Track() != t {
				continue
			}
			if t.Kind() == webrtc.RTPCodecTypeVideo {
				p.video.add(t)
				go rs.relayPLI(roomName, p, t, tr.Sender())
			} else {
				p.audio.add(t)
			}
		}
	}
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

// forward sends src's packets of track tr to every other participant of
// the room.
func (rs *Rooms) forward(roomName string, src *participant, tr *webrtc.TrackRemote) {
	video := tr.Kind() == webrtc.RTPCodecTypeVideo
	sent := &src.sent
	if video {
		sent = &src.videoSent
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		for _, o := range rs.others(roomName, src) {
			set, received := &o.audio, &o.received
			if video {
				set, received = &o.video, &o.videoReceived
			}
			t, fresh := set.slotFor(src.id)
			if t == nil {
				continue
			}
			if fresh && video {
				src.requestKeyframe() // the new viewer needs one to start
			}
			if _, err := t.Write(buf[:n]); err == nil {
				received.Add(1)
				sent.Add(1)
			}
		}
	}
}

// others returns the room's participants but p.
func (rs *Rooms) others(roomName string, p *participant) []*participant {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.rooms[roomName]
	if r == nil {
		return nil
	}
	return slices.DeleteFunc(slices.Clone(r.members), func(o *participant) bool { return o == p })
}

// relayPLI passes the keyframe requests of viewer's video slot t (read
// from its sender) on to the camera the slot carries, until the sender
// closes.
func (rs *Rooms) relayPLI(roomName string, viewer *participant, t *webrtc.TrackLocalStaticRTP, s *webrtc.RTPSender) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		wants := false
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				wants = true
			}
		}
		if !wants {
			continue
		}
		from := viewer.video.carrying(t)
		for _, o := range rs.others(roomName, viewer) {
			if o.id == from {
				o.requestKeyframe()
			}
		}
	}
}

// requestKeyframe asks p's camera for a keyframe, at most once per
// pliInterval.
func (p *participant) requestKeyframe() {
	ssrc := p.camera.Load()
	now := time.Now().UnixNano()
	last := p.lastPLI.Load()
	if ssrc == 0 || now-last < int64(pliInterval) || !p.lastPLI.CompareAndSwap(last, now) {
		return
	}
	_ = p.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
}

// add adds a usable track.
func (s *slotSet) add(t *webrtc.TrackLocalStaticRTP) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tracks = append(s.tracks, t)
	s.from = append(s.from, "")
}

// slotFor returns the track that carries from's media, taking a free one
// on first use (fresh).
func (s *slotSet) slotFor(from string) (t *webrtc.TrackLocalStaticRTP, fresh bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	free := -1
	for i, f := range s.from {
		if f == from {
			return s.tracks[i], false
		}
		if f == "" && free < 0 {
			free = i
		}
	}
	if free < 0 {
		return nil, false
	}
	s.from[free] = from
	return s.tracks[free], true
}

// carrying returns whose media track t carries ("" for none).
func (s *slotSet) carrying(t *webrtc.TrackLocalStaticRTP) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.tracks {
		if x == t {
			return s.from[i]
		}
	}
	return ""
}

// free releases the slot that carries id.
func (s *slotSet) free(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, f := range s.from {
		if f == id {
			s.from[k] = ""
		}
	}
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
		o.audio.free(id)
		o.video.free(id)
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

// ParticipantInfo is a participant, with the audio and video packets
// forwarded from and to it.
type ParticipantInfo struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	Sent          uint64 `json:"sent"`
	Received      uint64 `json:"received"`
	VideoSent     uint64 `json:"video_sent"`
	VideoReceived uint64 `json:"video_received"`
}

// List returns the rooms in progress.
func (rs *Rooms) List() []RoomInfo {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := []RoomInfo{}
	for _, r := range rs.rooms {
		ri := RoomInfo{Name: r.name}
		for _, p := range r.members {
			ri.Participants = append(ri.Participants, ParticipantInfo{ID: p.id, Name: p.name, Sent: p.sent.Load(), Received: p.received.Load(),
				VideoSent: p.videoSent.Load(), VideoReceived: p.videoReceived.Load()})
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
