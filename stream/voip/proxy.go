package voip

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

const maxForwards = 70

// handleRequest validates a request (RFC 3261 §16.3), answers what is for
// the server itself (REGISTER, OPTIONS) and forwards the rest.
func (s *Server) handleRequest(req *sip.Request, src peer) {
	if req.SipVersion != "SIP/2.0" {
		s.reply(req, src, 505, "Version Not Supported")
		return
	}
	via := req.Via()
	if via == nil {
		s.stats.malformed.Add(1)
		return // nowhere to answer
	}
	// §18.2.1: where the request really came from, for the responses.
	if src.ap.Addr().String() != via.Host {
		via.Params.Add("received", src.ap.Addr().String())
	}
	if via.Params.Has("rport") {
		via.Params.Add("rport", strconv.Itoa(int(src.ap.Port())))
	}
	for _, miss := range []struct {
		ok   bool
		name string
	}{{req.From() != nil, "From"}, {req.To() != nil, "To"}, {req.CallID() != nil, "Call-ID"}, {req.CSeq() != nil, "CSeq"}} {
		if !miss.ok {
			s.stats.malformed.Add(1)
			s.reply(req, src, 400, "Missing "+miss.name)
			return
		}
	}
	if req.CSeq().MethodName != req.Method {
		s.reply(req, src, 400, "CSeq Method Mismatch")
		return
	}
	if req.Method == sip.REGISTER {
		s.register(req, src)
		return
	}
	bridge := s.fromBridge(req)
	// The ACK of a final response this server made itself (407, 404, 503…)
	// ends here (RFC 3261 §16.7: the proxy's own transaction).
	if req.Method == sip.ACK && tagOf(req.To().Params) == s.localTag(req) {
		return
	}
	mf := req.MaxForwards()
	if mf != nil && *mf == 0 {
		if req.Method == sip.OPTIONS {
			s.reply(req, src, 200, "OK")
			return
		}
		s.reply(req, src, 483, "Too Many Hops")
		return
	}
	// §16.3 step 4: our branch in the Via list is a loop.
	for _, h := range req.GetHeaders("Via") {
		if v, ok := h.(*sip.ViaHeader); ok {
			if b, _ := v.Params.Get("branch"); strings.HasPrefix(b, branchMagic+s.id) {
				s.reply(req, src, 482, "Loop Detected")
				return
			}
		}
	}

	// §16.4: loose routing, remove the Route entries that name us.
	routed := false
	for {
		r := req.Route()
		if r == nil || !s.isUs(&r.Address) {
			break
		}
		req.RemoveHeader("Route")
		routed = true
	}
	// In-dialog requests are forwarded only for calls that went through
	// this box: a forged Route or Contact must not turn it into a relay
	// towards anyone. (The ACK of a failed INVITE has no Route and is
	// routed by its user like the INVITE.)
	if req.To().Params.Has("tag") && s.calls.get(req.CallID().Value(), nil) == nil && (routed || req.Method != sip.ACK) {
		if req.Method != sip.ACK {
			s.reply(req, src, 481, "Call/Transaction Does Not Exist")
		}
		return
	}
	// A new call from a phone: its caller must be the user it proves to
	// be (digest, 407), so that nobody on the LAN can call as someone
	// else. Calls from the box's own user agents and from other boxes of
	// the community (which checked their callers) pass.
	newCall := req.Method == sip.INVITE && !req.To().Params.Has("tag") && s.calls.get(req.CallID().Value(), nil) == nil
	if newCall && s.cfg.Password != nil && !bridge && !s.trustedSource(src.ap) {
		if !s.authenticate(req, src, req.From().Address.User, s.now(), proxyAuth) {
			return
		}
		req.RemoveHeader("Proxy-Authorization") // consumed here (§22.3)
	}
	if newCall && s.callRate != nil && !s.callRate.allow(src.ap.Addr(), s.now()) {
		s.stats.blocked.Add(1)
		res := s.response(req, 503, "Too Many Calls")
		res.AppendHeader(sip.NewHeader("Retry-After", "5"))
		s.send(res, src)
		return
	}
	var next sip.Uri
	var dst peer
	if r := req.Route(); r != nil {
		next = r.Address
	} else if _, err := netip.ParseAddr(strings.Trim(req.Recipient.Host, "[]")); err == nil && !s.isUs(&req.Recipient) && req.To().Params.Has("tag") {
		next = req.Recipient // in-dialog: straight to the remote target
	} else {
		user := req.Recipient.User
		if user == "" {
			if req.Method == sip.OPTIONS {
				s.reply(req, src, 200, "OK")
				return
			}
			s.reply(req, src, 404, "Not Found")
			return
		}
		if b, ok := s.reg.lookup(user, s.now()); ok {
			// §16.5: the registered contact becomes the Request-URI.
			req.Recipient = b.contact
			next = b.contact
			// The REGISTER's connection, when the phone receives on it
			// (its contact is where it registered from, or says "ob",
			// RFC 5626); otherwise the contact's address.
			if b.src.tcp != nil && (b.contact.UriParams.Has("ob") || b.contact.HostPort() == b.src.ap.String()) {
				dst = b.src
			}
		} else if ap, ok := s.locate(user); ok {
			next = sip.Uri{Scheme: "sip", Host: ap.Addr().String(), Port: int(ap.Port())}
		} else {
			if req.Method == sip.INVITE {
				s.failedAttempt(req, "404 Not Found")
			}
			if req.Method != sip.ACK {
				s.reply(req, src, 404, "Not Found")
			}
			return
		}
	}
	if dst.tcp == nil {
		var err error
		if dst, err = s.resolve(&next); err != nil {
			if req.Method != sip.ACK {
				s.reply(req, src, 502, "Bad Gateway")
			}
			return
		}
	}
	s.forwardRequest(req, src, dst)
}

// locate asks Config.Locate, never for an address of this server.
func (s *Server) locate(user string) (netip.AddrPort, bool) {
	if s.cfg.Locate == nil {
		return netip.AddrPort{}, false
	}
	ap, ok := s.cfg.Locate(user)
	if !ok || (ap.Port() == s.port && s.local.isOwn(ap.Addr())) {
		return netip.AddrPort{}, false
	}
	return ap, true
}

// isUs reports whether a URI names this server.
func (s *Server) isUs(u *sip.Uri) bool {
	a, err := netip.ParseAddr(u.Host)
	if err != nil {
		return false
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return port == int(s.port) && s.local.isOwn(a)
}

// resolve turns a next-hop URI into an address; only IP literals are
// accepted (boxes and phones are addressed by IP; no DNS lookups on the
// signalling path).
func (s *Server) resolve(u *sip.Uri) (peer, error) {
	a, err := netip.ParseAddr(strings.Trim(u.Host, "[]"))
	if err != nil {
		return peer{}, fmt.Errorf("next hop %q is not an address", u.Host)
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	ap := netip.AddrPortFrom(a.Unmap(), uint16(port))
	tp, _ := u.UriParams.Get("transport")
	if strings.EqualFold(tp, "tcp") {
		tc, err := s.tcpTo(ap)
		if err != nil {
			return peer{}, err
		}
		return peer{ap: ap, tcp: tc}, nil
	}
	if tp == "" { // reuse a connection to the target (RFC 5923 §6 in spirit)
		s.mu.Lock()
		tc := s.conns[ap]
		s.mu.Unlock()
		if tc != nil {
			return peer{ap: ap, tcp: tc}, nil
		}
	}
	return peer{ap: ap}, nil
}

// forwardRequest does §16.6: Max-Forwards, Record-Route, our Via, media
// anchoring, and sends.
func (s *Server) forwardRequest(req *sip.Request, src, dst peer) {
	if mf := req.MaxForwards(); mf != nil {
		*mf--
	} else {
		m := sip.MaxForwardsHeader(maxForwards)
		req.AppendHeader(&m)
	}
	outIP := s.local.facing(dst.ap.Addr())
	inIP := s.local.facing(src.ap.Addr())
	proto := "UDP"
	if dst.tcp != nil {
		proto = "TCP"
	}
	initial := !req.To().Params.Has("tag")
	callID := req.CallID().Value()
	if req.Method == sip.INVITE && initial {
		// §16.6 step 4, with RFC 5658 double routes when the two sides
		// face different addresses or transports.
		inRR := s.recordRoute(inIP, src.tcp != nil)
		outRR := s.recordRoute(outIP, dst.tcp != nil)
		if inRR.Address.String() != outRR.Address.String() {
			req.PrependHeader(outRR, inRR)
		} else {
			req.PrependHeader(outRR)
		}
	}
	// media and call state
	switch req.Method {
	case sip.INVITE:
		c := s.calls.get(callID, func() *call {
			return &call{id: callID, from: req.From().Address.User, to: req.To().Address.User,
				callerTag: tagOf(req.From().Params), start: s.now(), media: s.relay.NewSession()}
		})
		if initial {
			s.calls.mu.Lock()
			c.caller = dialogSide{tag: tagOf(req.From().Params), uri: req.From().Address.String(), via: src,
				cseq: req.CSeq().SeqNo, present: true}
			if ct := req.Contact(); ct != nil {
				c.caller.target = ct.Address.String()
			}
			s.calls.mu.Unlock()
		}
		if err := s.anchor(c, req, s.sideOfRequest(c, req), dst.ap.Addr()); err != nil {
			s.log.Debug("sip media anchoring failed", "call", callID, "err", err)
			code, reason := 400, "Bad Session Description"
			if !errors.Is(err, ErrMalformed) {
				code, reason = 503, "Media Relay Full"
			}
			s.reply(req, src, code, reason)
			if initial {
				s.calls.end(callID, fmt.Sprintf("%d %s", code, reason))
			}
			return
		}
	case sip.ACK, sip.UPDATE, sip.PRACK:
		if c := s.calls.get(callID, nil); c != nil {
			_ = s.anchor(c, req, s.sideOfRequest(c, req), dst.ap.Addr())
		}
	case sip.BYE:
		defer s.calls.end(callID, "answered")
	case sip.CANCEL:
		defer s.calls.end(callID, "cancelled")
	}

	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: proto,
		Host: addrHost(outIP), Port: int(s.port), Params: sip.HeaderParams{{K: "branch", V: s.branch(req)}, {K: "rport"}}}
	req.PrependHeader(via)
	s.send(req, dst)
}

func (s *Server) recordRoute(ip netip.Addr, tcp bool) *sip.RecordRouteHeader {
	u := sip.Uri{Scheme: "sip", Host: addrHost(ip), Port: int(s.port), UriParams: sip.HeaderParams{{K: "lr"}}}
	if tcp {
		u.UriParams = append(u.UriParams, sip.HeaderKV{K: "transport", V: "tcp"})
	}
	return &sip.RecordRouteHeader{Address: u}
}

func addrHost(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

func tagOf(p sip.HeaderParams) string {
	t, _ := p.Get("tag")
	return t
}

// branch derives our Via branch from the request's (§16.11): the same for
// an INVITE, its retransmissions, its CANCEL and the ACK of a non-2xx, so
// responses and CANCELs match without transaction state.
func (s *Server) branch(req *sip.Request) string {
	h := fnv.New64a()
	v := req.Via()
	b, _ := v.Params.Get("branch")
	h.Write([]byte(b))
	h.Write([]byte{0})
	h.Write([]byte(v.Host))
	h.Write([]byte{0})
	h.Write([]byte(req.CallID().Value()))
	if !strings.HasPrefix(b, "z9hG4bK") { // RFC 2543 peer: no unique branch
		h.Write([]byte(req.Recipient.String()))
		h.Write([]byte(tagOf(req.From().Params)))
		h.Write([]byte(strconv.Itoa(int(req.CSeq().SeqNo))))
	}
	return branchMagic + s.id + strconv.FormatUint(h.Sum64(), 36)
}

// sideOfRequest is the side of the call that sent req.
func (s *Server) sideOfRequest(c *call, req *sip.Request) int {
	if tagOf(req.From().Params) == c.callerTag {
		return sideA
	}
	return sideB
}

// anchor points the session description of m (sent by side from, going to
// dst) at the relay (RFC 3264 offer or answer alike).
func (s *Server) anchor(c *call, m sip.Message, from int, dst netip.Addr) error {
	body := m.Body()
	if len(body) == 0 || c.media == nil {
		return nil
	}
	if ct := m.GetHeaders("Content-Type"); len(ct) == 0 || !strings.HasPrefix(strings.ToLower(ct[0].Value()), "application/sdp") {
		return nil
	}
	media, err := parseSDP(body)
	if err != nil {
		return err
	}
	to := 1 - from
	ports, err := c.media.Ports(to, len(media))
	if err != nil {
		return err
	}
	for i, md := range media {
		if md.Port != 0 && md.Addr.IsValid() && !md.Addr.IsUnspecified() {
			c.media.SetEndpoint(from, i, netip.AddrPortFrom(md.Addr.Unmap(), md.Port))
		}
	}
	addr := s.cfg.Relay.Addr
	if !addr.IsValid() || addr.IsUnspecified() {
		addr = s.local.facing(dst)
	}
	m.SetBody(rewriteSDP(body, addr, ports))
	return nil
}

// handleResponse forwards a response along its Via (§16.7, §18.2.2).
func (s *Server) handleResponse(res *sip.Response, src peer) {
	v := res.Via()
	if v == nil {
		return
	}
	if b, _ := v.Params.Get("branch"); !strings.HasPrefix(b, branchMagic+s.id) {
		return // not ours: drop (§16.7 step 2... stateless: §16.11)
	}
	res.RemoveHeader("Via")
	next := res.Via()
	if next == nil {
		return // for us: nothing sent by us expects one
	}
	dst, err := s.viaTarget(next)
	if err != nil {
		return
	}
	if cs := res.CSeq(); cs != nil && cs.MethodName == sip.INVITE && res.CallID() != nil {
		callID := res.CallID().Value()
		if c := s.calls.get(callID, nil); c != nil {
			// the response comes from the side that did not send the INVITE
			reqSide := sideB
			if tagOf(res.From().Params) == c.callerTag {
				reqSide = sideA
			}
			_ = s.anchor(c, res, 1-reqSide, dst.ap.Addr())
			switch {
			case res.StatusCode >= 200 && res.StatusCode < 300:
				s.calls.mu.Lock()
				if c.answered.IsZero() && reqSide == sideA {
					c.answered = s.now()
					c.callee = dialogSide{tag: tagOf(res.To().Params), uri: res.To().Address.String(), via: src, present: true}
					if ct := res.Contact(); ct != nil {
						c.callee.target = ct.Address.String()
					}
				}
				s.calls.mu.Unlock()
			case res.StatusCode >= 300:
				s.calls.mu.Lock()
				established := !c.answered.IsZero()
				s.calls.mu.Unlock()
				if !established {
					result := strconv.Itoa(res.StatusCode) + " " + res.Reason
					if res.StatusCode == 487 {
						result = "cancelled"
					}
					s.calls.end(callID, result)
				}
			}
		}
	}
	s.send(res, dst)
}

// viaTarget is where a response goes: the received/rport of the Via, or
// its sent-by (§18.2.2, RFC 3581 §4).
func (s *Server) viaTarget(v *sip.ViaHeader) (peer, error) {
	host := v.Host
	if r, ok := v.Params.Get("received"); ok && r != "" {
		host = r
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return peer{}, fmt.Errorf("via host %q is not an address", host)
	}
	port := v.Port
	if rp, ok := v.Params.Get("rport"); ok && rp != "" {
		if n, err := strconv.Atoi(rp); err == nil {
			port = n
		}
	}
	if port <= 0 || port > 65535 {
		port = 5060
	}
	ap := netip.AddrPortFrom(a.Unmap(), uint16(port))
	if strings.EqualFold(v.Transport, "TCP") {
		s.mu.Lock()
		tc := s.conns[ap]
		s.mu.Unlock()
		if tc == nil {
			var err error
			if tc, err = s.tcpTo(ap); err != nil {
				return peer{}, err
			}
		}
		return peer{ap: ap, tcp: tc}, nil
	}
	return peer{ap: ap}, nil
}

// response builds a response to req (§8.2.6): its Vias, From, To (with a
// tag derived from the request, so retransmissions get the same one),
// Call-ID and CSeq.
func (s *Server) response(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponse(code, reason)
	for _, h := range req.GetHeaders("Via") {
		res.AppendHeader(h)
	}
	if h := req.From(); h != nil {
		res.AppendHeader(h)
	}
	if h := req.To(); h != nil {
		to := *h
		if code > 100 && !to.Params.Has("tag") {
			to.Params = append(to.Params.Clone(), sip.HeaderKV{K: "tag", V: s.localTag(req)})
		}
		res.AppendHeader(&to)
	}
	if h := req.CallID(); h != nil {
		res.AppendHeader(h)
	}
	if h := req.CSeq(); h != nil {
		res.AppendHeader(h)
	}
	res.AppendHeader(sip.NewHeader("Server", "cloudbox"))
	res.SetBody(nil)
	return res
}

func (s *Server) localTag(req *sip.Request) string {
	h := fnv.New64a()
	h.Write([]byte(req.CallID().Value()))
	h.Write([]byte(tagOf(req.From().Params)))
	h.Write([]byte(s.id))
	return strconv.FormatUint(h.Sum64(), 36)
}

// reply answers req with a bodiless response.
func (s *Server) reply(req *sip.Request, src peer, code int, reason string) {
	if req.Method == sip.ACK {
		return // never answered (§17.2.1)
	}
	if req.Via() == nil || req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil {
		// too broken for a proper response: the raw one
		var b strings.Builder
		req.StringWrite(&b)
		s.replyUnparsable([]byte(b.String()), src, reason)
		return
	}
	s.send(s.response(req, code, reason), src)
}

// failedAttempt records a call that failed before it was forwarded.
func (s *Server) failedAttempt(req *sip.Request, result string) {
	if s.cfg.OnRecord == nil || req.To().Params.Has("tag") {
		return
	}
	now := s.now()
	s.cfg.OnRecord(Record{ID: req.CallID().Value(), From: req.From().Address.User, To: req.To().Address.User,
		Start: now, End: now, Result: result})
}

// byeBoth ends an answered call on both sides (RFC 3261 §15.1.1 from the
// proxy's position: each BYE looks like it came from the other side).
func (s *Server) byeBoth(c *call) {
	s.calls.mu.Lock()
	caller, callee := c.caller, c.callee
	s.calls.mu.Unlock()
	if !caller.present || !callee.present {
		return
	}
	s.sendBye(c.id, caller, callee, caller.cseq+1000)
	s.sendBye(c.id, callee, caller, 1000)
}

// sendBye sends a BYE to side to, as if from side from.
func (s *Server) sendBye(callID string, to, from dialogSide, cseq uint32) {
	var target sip.Uri
	if err := sip.ParseUri(to.target, &target); err != nil {
		return
	}
	dst := to.via
	if dst.tcp == nil {
		if d, err := s.resolve(&target); err == nil {
			dst = d
		}
	}
	req := sip.NewRequest(sip.BYE, target)
	proto := "UDP"
	if dst.tcp != nil {
		proto = "TCP"
	}
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: proto,
		Host: addrHost(s.local.facing(dst.ap.Addr())), Port: int(s.port),
		Params: sip.HeaderParams{{K: "branch", V: branchMagic + s.id + "bye" + strconv.FormatUint(uint64(cseq), 36) + to.tag}}})
	var fu, tu sip.Uri
	_ = sip.ParseUri(from.uri, &fu)
	_ = sip.ParseUri(to.uri, &tu)
	req.AppendHeader(&sip.FromHeader{Address: fu, Params: sip.HeaderParams{{K: "tag", V: from.tag}}})
	req.AppendHeader(&sip.ToHeader{Address: tu, Params: sip.HeaderParams{{K: "tag", V: to.tag}}})
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.BYE})
	mf := sip.MaxForwardsHeader(maxForwards)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.NewHeader("Reason", `SIP;cause=408;text="media timeout"`))
	req.SetBody(nil)
	s.send(req, dst)
}
