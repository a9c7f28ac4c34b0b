//go:build !router

package appliance

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/services"
	"github.com/cloudbox/cloudbox/stream/voip"
)

// catalogRecords returns a function listing the catalog's services of a
// type (nil while the catalog does not run).
func catalogRecords(cs *catalogService) func(typ string) []services.Record {
	return func(typ string) []services.Record {
		cat := cs.current()
		if cat == nil {
			return nil
		}
		return cat.Services(services.Filter{Type: typ})
	}
}

// errNoVoIP is what the calls API and page say when telephony is off.
const errNoVoIP = "telephony is off on this box (VoIP disabled), or has not started yet"

// voipRoutes adds the calls API and page.
func (h *handler) voipRoutes(member, admin func(http.HandlerFunc) http.HandlerFunc) {
	h.mux.Handle("/api/v1/calls", member(apiGetOnly(h.callsInfo)))
	h.mux.Handle("/api/v1/calls/phone", member(apiGetOnly(h.callsPhone)))
	h.mux.Handle("/api/v1/calls/line", member(apiGetOnly(h.callsLine)))
	h.mux.Handle("/api/v1/calls/dial", member(h.callsDial))
	h.mux.Handle("/api/v1/calls/answer", member(h.callsAnswer))
	h.mux.Handle("/api/v1/calls/hangup", member(h.callsHangup))
	h.mux.Handle("/calls", getOnly(h.pageAuth(roleMember, h.callsPage)))
	h.mux.Handle("/api/v1/rooms", member(h.roomsCreate))
	h.mux.HandleFunc("/api/v1/rooms/{room}/join", h.roomJoin)
	h.mux.HandleFunc("/api/v1/rooms/{room}/leave", h.roomLeave)
	h.mux.Handle("/room/{room}", getOnly(h.optionalAuth(h.roomPage)))
}

// maxRoomsMade bounds the rooms a box keeps.
const maxRoomsMade = 256

// roomsCreate makes a conference room (POST {"title": "..."}) and returns
// its link.
func (h *handler) roomsCreate(w http.ResponseWriter, r *http.Request) {
	v, ok := h.voipOn(w)
	if !ok {
		return
	}
	var req struct {
		Title string `json:"title"`
	}
	if !decodeJSONPost(w, r, 4<<10, &req, `{"title":"Weekly meeting"}`) {
		return
	}
	req.Title = strings.TrimSpace(req.Title)
	if req.Title == "" || len(req.Title) > 80 {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: "give the room a title of 1 to 80 characters"})
		return
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		writeJSON(w, http.StatusInternalServerError, errorResponse{Error: err.Error()})
		return
	}
	token := hex.EncodeToString(b[:])
	p, _ := who(r)
	v.mu.Lock()
	if len(v.rooms) >= maxRoomsMade {
		v.mu.Unlock()
		writeJSON(w, http.StatusConflict, errorResponse{Error: "this box has too many rooms; ask an administrator to restart telephony"})
		return
	}
	v.rooms[token] = roomEntry{Title: req.Title, Owner: p.account, Created: v.now()}
	v.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"room": token, "title": req.Title, "link": "/room/" + token})
}

// room returns the room of the request's path and the rooms engine, or
// answers 404/503.
func (h *handler) room(w http.ResponseWriter, r *http.Request) (string, roomEntry, *voip.Rooms, bool) {
	v, ok := h.voipOn(w)
	if !ok {
		return "", roomEntry{}, nil, false
	}
	token := r.PathValue("room")
	v.mu.Lock()
	e, found := v.rooms[token]
	phones := v.phones
	v.mu.Unlock()
	if !found {
		writeJSON(w, http.StatusNotFound, errorResponse{Error: "no such room on this box: check the link"})
		return "", roomEntry{}, nil, false
	}
	if phones == nil {
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: "rooms are not available on this box (WebRTC is off)"})
		return "", roomEntry{}, nil, false
	}
	return token, e, phones.Rooms(), true
}

// roomJoin joins a room (POST {"name": "...", "offer": "v=0..."}); the
// link is the capability, no account is needed.
func (h *handler) roomJoin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name  string `json:"name"`
		Offer string `json:"offer"`
	}
	if !decodeJSONPost(w, r, maxSDPBody, &req, `{"name":"Ana","offer":"v=0..."}`) {
		return
	}
	token, _, rooms, ok := h.room(w, r)
	if !ok {
		return
	}
	name := cutUTF8(strings.TrimSpace(req.Name), 40)
	if name == "" {
		name = "guest"
	}
	id, answer, err := rooms.Join(token, name, req.Offer)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "answer": answer})
}

func (h *handler) roomLeave(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID string `json:"id"`
	}
	if !decodeJSONPost(w, r, 4<<10, &req, `{"id":"..."}`) {
		return
	}
	token, _, rooms, ok := h.room(w, r)
	if !ok {
		return
	}
	if err := rooms.Leave(token, req.ID); err != nil {
		writeJSON(w, http.StatusNotFound, errorResponse{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": req.ID})
}

func (h *handler) roomPage(w http.ResponseWriter, r *http.Request) {
	v := h.cfg.voip
	token := r.PathValue("room")
	var e roomEntry
	found := false
	if v != nil {
		v.mu.Lock()
		e, found = v.rooms[token]
		v.mu.Unlock()
	}
	if !found {
		h.notFound(w, r)
		return
	}
	h.render(w, http.StatusOK, h.panel.room, struct {
		pageData
		Room  string
		Title string
		Slots int
	}{h.pageFor(r, e.Title, ""), token, e.Title, voip.MaxRoomSize - 1})
}

// writeVoIPMetrics adds telephony's metrics.
func (h *handler) writeVoIPMetrics(w io.Writer) {
	if v := h.cfg.voip; v != nil {
		if srv := v.server(); srv != nil {
			srv.WriteMetrics(w)
		}
	}
}

// voipOn returns the telephony component, or answers 503 when it is off.
func (h *handler) voipOn(w http.ResponseWriter) (*voipService, bool) {
	v := h.cfg.voip
	if v == nil || v.cfg.Disabled {
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: errNoVoIP})
		return nil, false
	}
	return v, true
}

// line returns the browser line of the caller's account (open while its
// Calls page is), or answers the request with the reason there is none.
func (h *handler) line(w http.ResponseWriter, r *http.Request) (*voip.Line, bool) {
	v, ok := h.voipOn(w)
	if !ok {
		return nil, false
	}
	p, _ := who(r)
	ext, _, ok := v.extension(p.account)
	if !ok {
		writeJSON(w, http.StatusNotFound, errorResponse{Error: "account " + p.account + " has no extension on this box"})
		return nil, false
	}
	v.mu.Lock()
	l := v.lines[ext]
	v.mu.Unlock()
	if l == nil {
		writeJSON(w, http.StatusConflict, errorResponse{Error: "the phone line is not open: open the Calls page (GET /api/v1/calls/line) first"})
		return nil, false
	}
	return l, true
}

// callsLine opens the caller's phone line and streams its events
// (server-sent events, one JSON PhoneEvent per message) while it is open.
func (h *handler) callsLine(w http.ResponseWriter, r *http.Request) {
	v, ok := h.voipOn(w)
	if !ok {
		return
	}
	p, _ := who(r)
	v.syncUsers()
	ext, _, ok := v.extension(p.account)
	v.mu.Lock()
	phones := v.phones
	v.mu.Unlock()
	if !ok || phones == nil {
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: "browser calls are not available on this box (no extension for " + p.account + ", or WebRTC is off)"})
		return
	}
	l, err := phones.Open(ext)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: err.Error()})
		return
	}
	v.mu.Lock()
	v.lines[ext] = l
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		if v.lines[ext] == l {
			delete(v.lines, ext)
		}
		v.mu.Unlock()
		l.Close()
	}()
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream, not a response
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "event: line\ndata: {\"extension\":%q}\n\n", ext)
	_ = rc.Flush()
	ping := time.NewTicker(25 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-l.Done():
			return
		case e := <-l.Events():
			b, _ := json.Marshal(e)
			fmt.Fprintf(w, "data: %s\n\n", b)
		case <-ping.C:
			fmt.Fprint(w, ": ping\n\n")
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// dialRequest is the body of POST /api/v1/calls/dial.
type dialRequest struct {
	To    string `json:"to"`
	Offer string `json:"offer"`
}

// answerRequest is the body of POST /api/v1/calls/answer and hangup.
type answerRequest struct {
	Call  string `json:"call"`
	Offer string `json:"offer,omitempty"`
}

// maxSDPBody bounds the signalling requests.
const maxSDPBody = 64 << 10

func (h *handler) callsDial(w http.ResponseWriter, r *http.Request) {
	var req dialRequest
	if !decodeJSONPost(w, r, maxSDPBody, &req, `{"to":"412001","offer":"v=0..."}`) {
		return
	}
	if !validExtension(req.To) || req.Offer == "" {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: "give \"to\" (an extension: digits) and \"offer\" (the browser's SDP offer)"})
		return
	}
	l, ok := h.line(w, r)
	if !ok {
		return
	}
	call, answer, err := l.Dial(req.To, req.Offer)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"call": call, "answer": answer})
}

func (h *handler) callsAnswer(w http.ResponseWriter, r *http.Request) {
	var req answerRequest
	if !decodeJSONPost(w, r, maxSDPBody, &req, `{"call":"...","offer":"v=0..."}`) {
		return
	}
	l, ok := h.line(w, r)
	if !ok {
		return
	}
	answer, err := l.Answer(req.Call, req.Offer)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"call": req.Call, "answer": answer})
}

func (h *handler) callsHangup(w http.ResponseWriter, r *http.Request) {
	var req answerRequest
	if !decodeJSONPost(w, r, 4<<10, &req, `{"call":"..."}`) {
		return
	}
	l, ok := h.line(w, r)
	if !ok {
		return
	}
	if err := l.Hangup(req.Call); err != nil {
		writeJSON(w, http.StatusNotFound, errorResponse{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"call": req.Call})
}

// validExtension reports whether s looks like an extension (or a room
// number): 2 to 15 digits.
func validExtension(s string) bool {
	if len(s) < 2 || len(s) > 15 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// CallsInfo is the body of GET /api/v1/calls.
type CallsInfo struct {
	// Running is whether SIP serves; Problem says why not.
	Running bool   `json:"running"`
	Problem string `json:"problem,omitempty"`
	// SIP is the SIP address phones register with.
	SIP string `json:"sip,omitempty"`
	// Prefix is the box's extension prefix.
	Prefix string `json:"prefix,omitempty"`
	// Calls are the calls in progress through this box.
	Calls []voip.Call `json:"calls"`
	// Records are the latest call detail records, newest first.
	Records []voip.Record `json:"records"`
	// Registrations are the phones registered here.
	Registrations []voip.Registration `json:"registrations"`
	// Directory lists the community's extensions.
	Directory []DirectoryEntry `json:"directory"`
	// Rooms are the conference rooms in progress (by the token of their
	// link) and RoomLinks the rooms made here.
	Rooms     []voip.RoomInfo `json:"rooms"`
	RoomLinks []RoomLink      `json:"room_links"`
	// Relay counts the media relay's packets.
	Relay *voip.RelayStats `json:"relay,omitempty"`
}

// RoomLink is a conference room made on this box.
type RoomLink struct {
	Title string `json:"title"`
	Link  string `json:"link"`
	Owner string `json:"owner"`
}

// DirectoryEntry is an extension of the community.
type DirectoryEntry struct {
	Extension string `json:"extension"`
	Name      string `json:"name"`
	Box       string `json:"box"`
}

func (v *voipService) info() CallsInfo {
	ci := CallsInfo{Calls: []voip.Call{}, Records: []voip.Record{}, Registrations: []voip.Registration{}, Directory: []DirectoryEntry{},
		Rooms: []voip.RoomInfo{}, RoomLinks: []RoomLink{}}
	v.mu.Lock()
	srv, problem, phones := v.srv, v.problem, v.phones
	for token, e := range v.rooms {
		ci.RoomLinks = append(ci.RoomLinks, RoomLink{Title: e.Title, Link: "/room/" + token, Owner: e.Owner})
	}
	ci.Prefix = v.st.Prefix
	recs := slices.Clone(v.recent)
	v.mu.Unlock()
	slices.Reverse(recs)
	ci.Records = append(ci.Records, recs...)
	ci.Problem = problem
	if srv != nil {
		ci.Running = true
		ci.SIP = srv.Addr().String()
		ci.Calls = append(ci.Calls, srv.Calls()...)
		ci.Registrations = append(ci.Registrations, srv.Registrations()...)
		st := srv.Relay().Stats()
		ci.Relay = &st
	}
	if phones != nil {
		ci.Rooms = append(ci.Rooms, phones.Rooms().List()...)
	}
	slices.SortFunc(ci.RoomLinks, func(a, b RoomLink) int { return strings.Compare(a.Title, b.Title) })
	for _, r := range v.deps.records(voipType) {
		if ext := r.TXT["ext"]; ext != "" {
			ci.Directory = append(ci.Directory, DirectoryEntry{Extension: ext, Name: r.TXT["name"], Box: r.OwnerName})
		}
	}
	slices.SortFunc(ci.Directory, func(a, b DirectoryEntry) int { return strings.Compare(a.Extension, b.Extension) })
	return ci
}

func (h *handler) callsInfo(w http.ResponseWriter, r *http.Request) {
	if v, ok := h.voipOn(w); ok {
		writeJSON(w, http.StatusOK, v.info())
	}
}

// PhoneInfo is the body of GET /api/v1/calls/phone: how to set up a SIP
// phone for an account.
type PhoneInfo struct {
	Account   string `json:"account"`
	Extension string `json:"extension"`
	// User and Password are the SIP credentials (digest authentication).
	User     string `json:"user"`
	Password string `json:"password"`
	// Server is the box's SIP address as the client reached the panel.
	Server string `json:"server"`
	Domain string `json:"domain"`
}

// callsPhone returns the SIP settings of the caller's account, or with
// ?account=NAME of any account for an administrator.
func (h *handler) callsPhone(w http.ResponseWriter, r *http.Request) {
	v, ok := h.voipOn(w)
	if !ok {
		return
	}
	p, _ := who(r)
	name := p.account
	if q := r.URL.Query().Get("account"); q != "" && q != name {
		if p.role != roleAdmin {
			writeJSON(w, http.StatusForbidden, errorResponse{Error: "only an administrator may see another account's phone settings"})
			return
		}
		name = q
	}
	v.syncUsers()
	pi, ok := v.phone(name, hostOf(r, localAddr(r)))
	if !ok {
		writeJSON(w, http.StatusNotFound, errorResponse{Error: "account " + name + " has no extension (not an account of this box, or the box has 99 already)"})
		return
	}
	writeJSON(w, http.StatusOK, pi)
}

func (v *voipService) phone(name, host string) (PhoneInfo, bool) {
	ext, secret, ok := v.extension(name)
	if !ok {
		return PhoneInfo{}, false
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	return PhoneInfo{Account: name, Extension: ext, User: ext, Password: secret,
		Server: host + ":" + strconv.Itoa(int(v.sipPort())), Domain: voip.DefaultDomain}, true
}

// callRow is a record as the page shows it.
type callRow struct {
	From, To, Result string
	Start            time.Time
	Duration         string
}

func (h *handler) callsPage(w http.ResponseWriter, r *http.Request) {
	var ci CallsInfo
	var phone *PhoneInfo
	if v := h.cfg.voip; v != nil && !v.cfg.Disabled {
		ci = v.info()
		if p, ok := who(r); ok {
			v.syncUsers()
			if pi, ok := v.phone(p.account, hostOf(r, localAddr(r))); ok {
				phone = &pi
			}
		}
	} else {
		ci.Problem = errNoVoIP
	}
	var rows []callRow
	for i, rec := range ci.Records {
		if i == 50 {
			break
		}
		d := "–"
		if rec.Duration > 0 {
			d = rec.Duration.Round(time.Second).String()
		}
		rows = append(rows, callRow{From: rec.From, To: rec.To, Result: rec.Result, Start: rec.Start, Duration: d})
	}
	h.render(w, http.StatusOK, h.panel.calls, struct {
		pageData
		Info  CallsInfo
		Phone *PhoneInfo
		Rows  []callRow
	}{h.pageFor(r, "Calls", "/calls"), ci, phone, rows})
}
