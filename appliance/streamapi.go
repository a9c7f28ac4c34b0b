//go:build !router

package appliance

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/cloudbox/cloudbox/stream"
)

// errNoStreams is the answer of the stream endpoints when streaming does
// not run on this box.
const errNoStreams = "live streaming is not running on this box; see the stream component in GET /api/v1/status"

// maxIngestRequest bounds the body of POST /api/v1/streams.
const maxIngestRequest = 4 << 10

// StreamsInfo is the body of GET /api/v1/streams.
type StreamsInfo struct {
	// Streams are the streams on this box: published here or relayed.
	Streams []stream.Info `json:"streams"`
	// Live are the streams of the whole community (from the catalog).
	Live []liveStream `json:"live"`
	// ICEPort is the UDP and TCP port of the media.
	ICEPort int `json:"ice_port,omitempty"`
}

// IngestRequest is the body of POST /api/v1/streams: open a plain RTP
// ingest (see stream.RTPOptions) or, with Format "mpegts", an MPEG-TS
// ingest (stream.IngestTS; the codecs come from the stream itself).
type IngestRequest struct {
	Name        string `json:"name"`
	Format      string `json:"format,omitempty"` // "rtp" (default) or "mpegts"
	Description string `json:"description,omitempty"`
	Video       string `json:"video,omitempty"`
	Audio       string `json:"audio,omitempty"`
	VideoPT     uint8  `json:"video_pt,omitempty"`
	AudioPT     uint8  `json:"audio_pt,omitempty"`
}

// IngestInfo is the answer of POST /api/v1/streams.
type IngestInfo struct {
	Name string `json:"name"`
	// Port is the UDP port to send RTP to, at this box's address.
	Port int `json:"port"`
	// Stop is the resource to DELETE to end the ingest.
	Stop string `json:"stop"`
	// Example is an ffmpeg command that sends a file.
	Example string `json:"example"`
}

// streamRoutes registers the stream API and pages.
func (h *handler) streamRoutes() {
	member := func(f http.HandlerFunc) http.HandlerFunc { return h.apiAuth(roleMember, f) }
	h.mux.Handle("/api/v1/streams", member(h.apiStreams))
	h.mux.HandleFunc("/api/v1/streams/{name}/whip", h.whipAuth)
	h.mux.Handle("/api/v1/streams/{name}/key", member(h.streamKey))
	h.mux.HandleFunc("/api/v1/streams/{name}/whep", h.whep)
	h.mux.HandleFunc("/api/v1/streams/{name}/session/{id}", h.streamSession)
	h.mux.Handle("/streams", getOnly(h.pageAuth(roleMember, h.streamsPage)))
	h.mux.Handle("/streams/golive", getOnly(h.pageAuth(roleMember, h.streamsPage)))
	h.mux.Handle("/streams/watch", getOnly(h.pageAuth(roleMember, h.streamsPage)))
}

// streamServer returns the running stream server, or answers 503.
func (h *handler) streamServer(w http.ResponseWriter) *stream.Server {
	if h.cfg.streams == nil || h.cfg.streams.srv == nil {
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: errNoStreams})
		return nil
	}
	return h.cfg.streams.srv
}

func sessionBase(r *http.Request) string {
	return "/api/v1/streams/" + r.PathValue("name") + "/session/"
}

// apiStreams answers GET /api/v1/streams and POST /api/v1/streams (a new
// RTP ingest).
func (h *handler) apiStreams(w http.ResponseWriter, r *http.Request) {
	if isGet(r) {
		writeJSON(w, http.StatusOK, h.streamsInfo())
		return
	}
	var req IngestRequest
	if !decodeJSONPost(w, r, maxIngestRequest, &req, `{"name": "camera", "video": "h264", "audio": "opus"}`) {
		return
	}
	srv := h.streamServer(w)
	if srv == nil {
		return
	}
	var in stream.RTPIngest
	var err error
	switch req.Format {
	case "", "rtp":
		in, err = srv.IngestRTP(req.Name, stream.RTPOptions{Description: req.Description, Video: req.Video, Audio: req.Audio,
			VideoPT: req.VideoPT, AudioPT: req.AudioPT})
	case "mpegts":
		in, err = srv.IngestTS(req.Name, stream.TSOptions{Description: req.Description})
	default:
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: fmt.Sprintf("format %q: use \"rtp\" or \"mpegts\"", req.Format)})
		return
	}
	if err != nil {
		writeJSON(w, stream.StatusOf(err), errorResponse{Error: err.Error()})
		return
	}
	host := hostOf(r, localAddr(r))
	stop := "/api/v1/streams/" + req.Name + "/session/" + in.Session
	if req.Format == "mpegts" {
		writeJSON(w, http.StatusCreated, IngestInfo{Name: req.Name, Port: in.Port, Stop: stop,
			Example: fmt.Sprintf("ffmpeg -re -i INPUT -c:v libx264 -pix_fmt yuv420p -profile:v baseline -bf 0 -tune zerolatency -g 50 -c:a libopus -f mpegts udp://%s:%d?pkt_size=1316", host, in.Port)})
		return
	}
	dst := fmt.Sprintf("rtp://%s:%d", host, in.Port)
	ex := "ffmpeg -re -i INPUT"
	if req.Video != "" {
		enc := "-c:v libx264 -pix_fmt yuv420p -profile:v baseline -bf 0 -tune zerolatency -g 50"
		if strings.EqualFold(req.Video, "vp8") {
			enc = "-c:v libvpx -deadline realtime -g 50"
		}
		ex += fmt.Sprintf(" -map 0:v %s -f rtp -payload_type %d %s", enc, cmp.Or(req.VideoPT, stream.DefaultVideoPT), dst)
	}
	if req.Audio != "" {
		ex += fmt.Sprintf(" -map 0:a -c:a libopus -f rtp -payload_type %d %s", cmp.Or(req.AudioPT, stream.DefaultAudioPT), dst)
	}
	writeJSON(w, http.StatusCreated, IngestInfo{Name: req.Name, Port: in.Port, Stop: stop, Example: ex})
}

func (h *handler) streamsInfo() StreamsInfo {
	info := StreamsInfo{Streams: []stream.Info{}, Live: []liveStream{}}
	if st := h.cfg.streams; st != nil {
		if st.srv != nil {
			info.Streams = st.srv.Streams()
			info.ICEPort = st.srv.ICEPort()
			slices.SortFunc(info.Streams, func(a, b stream.Info) int { return strings.Compare(a.Name, b.Name) })
		}
		if l := st.live(); l != nil {
			info.Live = l
		}
	}
	return info
}

// whipAuth lets a request with the stream's publish key through, and
// otherwise only members.
func (h *handler) whipAuth(w http.ResponseWriter, r *http.Request) {
	if st := h.cfg.streams; st != nil && st.keys != nil && st.keys.allows(r, r.PathValue("name")) {
		h.whip(w, r)
		return
	}
	h.apiAuth(roleMember, h.whip)(w, r)
}

// StreamKeyInfo is the answer of POST /api/v1/streams/NAME/key.
type StreamKeyInfo struct {
	Name string `json:"name"`
	// Key is the publish key: WHIP clients send it as their bearer
	// token. It is shown only now.
	Key string `json:"key"`
	// WHIP is the endpoint, at the address the request reached.
	WHIP string `json:"whip"`
}

// streamKey answers POST /api/v1/streams/NAME/key: a new publish key for
// the stream (the old one stops working).
func (h *handler) streamKey(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, errorResponse{Error: fmt.Sprintf("method %s not allowed on %s; use POST", r.Method, r.URL.Path)})
		return
	}
	name := r.PathValue("name")
	if err := stream.ValidName(name); err != nil {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: err.Error()})
		return
	}
	st := h.cfg.streams
	if st == nil || st.keys == nil {
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: errNoStreams})
		return
	}
	key, err := st.keys.issue(name)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorResponse{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusCreated, StreamKeyInfo{Name: name, Key: key,
		WHIP: "http://" + hostOf(r, localAddr(r)) + "/api/v1/streams/" + name + "/whip"})
}

// whip answers the WHIP endpoint of a stream (members: the panel's Go
// live page, OBS or any WHIP client with an API token or the stream's
// publish key).
func (h *handler) whip(w http.ResponseWriter, r *http.Request) {
	srv := h.streamServer(w)
	if srv == nil {
		return
	}
	srv.ServeWHIP(w, r, r.PathValue("name"), sessionBase(r), stream.PublishOptions{Description: r.URL.Query().Get("description")})
}

// whep answers the WHEP endpoint of a stream: members, and the boxes of
// the community that pull the stream to relay it.
func (h *handler) whep(w http.ResponseWriter, r *http.Request) {
	srv := h.streamServer(w)
	if srv == nil {
		return
	}
	serve := func(w http.ResponseWriter, r *http.Request) {
		srv.ServeWHEP(w, r, r.PathValue("name"), sessionBase(r), stream.PlayOptions{Relay: r.Header.Get(stream.RelayHeader)})
	}
	if h.cfg.streams.fromCommunity(r) {
		serve(w, r)
		return
	}
	r.Header.Del(stream.RelayHeader)
	h.apiAuth(roleMember, serve)(w, r)
}

// streamSession answers a WHIP or WHEP session resource: its random ID is
// what entitles a client to end it.
func (h *handler) streamSession(w http.ResponseWriter, r *http.Request) {
	srv := h.streamServer(w)
	if srv == nil {
		return
	}
	srv.ServeSession(w, r, r.PathValue("id"))
}

// streamsPage renders /streams (the streams of the community and of this
// box), /streams/golive (publish the browser's camera) and /streams/watch
// (the player).
func (h *handler) streamsPage(w http.ResponseWriter, r *http.Request) {
	view, title := "list", "Streams"
	name := r.URL.Query().Get("name")
	switch r.URL.Path {
	case "/streams/golive":
		view, title = "golive", "Go live"
	case "/streams/watch":
		view = "watch"
		if stream.ValidName(name) != nil {
			h.notFound(w, r)
			return
		}
	}
	d := h.pageFor(r, title, "/streams")
	if view == "watch" {
		// The layout translates the title again: a translated title
		// is no key and stays as it is.
		d.Title = d.T("Watch %s", name)
	}
	// The browser may use the box's TURN server, with a credential of
	// its own.
	ice := "[]"
	if st := h.cfg.streams; st != nil && st.srv != nil {
		p, _ := who(r)
		if s, ok := st.srv.TURNCredential(hostOf(r, localAddr(r)), p.account); ok {
			if b, err := json.Marshal([]stream.ICEServer{s}); err == nil {
				ice = string(b)
			}
		}
	}
	h.render(w, http.StatusOK, h.panel.streams, struct {
		pageData
		View    string
		Name    string
		Info    StreamsInfo
		Running bool
		ICE     string
	}{d, view, name, h.streamsInfo(), h.cfg.streams != nil && h.cfg.streams.srv != nil, ice})
}

// writeStreamMetrics adds the stream server's metrics to b.
func (h *handler) writeStreamMetrics(b *bytes.Buffer) {
	if h.cfg.streams != nil && h.cfg.streams.srv != nil {
		h.cfg.streams.srv.WriteMetrics(b)
	}
}
