// Package voip is the community's telephony: a SIP registrar and proxy per
// box (RFC 3261) with digest authentication (RFC 7616 §3.4, MD5 as SIP
// phones speak it), a media relay that anchors RTP (RFC 3550) so calls work
// between LANs that cannot reach each other directly, call tracking with
// call detail records, a browser softphone bridged to SIP (a back-to-back
// user agent: the browser's WebRTC leg ends on the box, an RTP leg goes to
// the SIP side, G.711 on both so nothing is transcoded), and conference
// rooms (a selective forwarding unit: every participant sends once and
// receives the others).
//
// Calls to extensions of other boxes are proxied to that box's SIP port over
// the overlay; which box has which extension comes from the community
// catalog through Config.Locate. The package does not know the catalog, the
// panel or the users' accounts: the appliance wires them in.
//
// What it does not do: no PSTN, no transcoding (a call whose two sides share
// no codec fails with 488), no SIP over TLS or WebSocket, no presence or
// messaging, and the proxy is transaction-stateless (RFC 3261 §16.11): it
// keeps per-call state only for media and the call list, and relies on the
// user agents' retransmissions.
package voip
