// Package appliance wires cloudbox's components into the daemon that runs on a
// box, cloudboxd: the node identity in the state directory (package
// appliance/state), the overlay (packages overlay and overlay/roster), the
// HTTP API under /api/v1, Prometheus metrics and the web panel. It is the
// only package (with image) that knows about gokrazy and /perm; feature
// packages receive a Config and never import appliance.
//
// [Run] is the whole daemon: it opens the state, starts the overlay when the
// box is a member of a community, serves HTTP until its context is
// cancelled, then shuts everything down gracefully.
//
// # Overlay
//
// The membership lives in <state dir>/overlay ([OverlayDir]), where
// `cloudbox community init` and `cloudbox invite` keep it too. On start, Run
// finds one of three cases:
//
//   - The box is a member: Run creates the TUN interface ("cb0") with the
//     certificate's IPv4 address (community prefix length) and the IPv6
//     address derived from the node key in the community's ULA /48, routes
//     both community prefixes onto it, and runs the overlay engine, the
//     roster and the roster service.
//   - The box is not a member and [OverlayConfig.JoinToken] is set: Run
//     parses the invitation and issues its certificate at once (a malformed
//     or expired token is an error before anything listens), then asks the
//     bootstrap members of the invitation (http://ADDR:PORT, the TCP port
//     equal to the overlay's UDP port) to admit it, retrying with backoff
//     while none answers. A refusal (invitation used by another box,
//     revoked, expired, wrong community) ends Run with an error, so that
//     cloudboxd exits 1 and the person who passed --join sees why. Once
//     admitted, Run saves the community and the membership and continues as
//     a member, applying the roster the bootstrap member sent.
//   - Otherwise the overlay stays off, without TUN device or root; its
//     component says how to become a member.
//
// A membership that exists but is unusable (malformed file, issued for
// another node key, expired or revoked) does not stop the daemon: the panel
// keeps running and the component says what is wrong. A missing
// /dev/net/tun or CAP_NET_ADMIN, a roster port in use and a state directory
// that cannot be written are errors of Run.
//
// The roster service listens on TCP [OverlayConfig.ListenPort] on every
// address. It serves the roster's join endpoint to anyone (rate-limited by
// the roster) and its snapshot endpoint only to connections made to this
// box's overlay address from inside the community's prefixes: answers to
// such a source leave through WireGuard to the member that owns it, so only
// members complete the connection. Other snapshot requests get 403. Every
// roster change is handed to the engine (overlay.Engine.SetPeers); the
// roster's anti-entropy fetches snapshots from
// http://[member's overlay IPv6]:PORT over the tunnel.
//
// # HTTP
//
//	GET /                the dashboard, rendered on the server (no JavaScript)
//	GET /community       the members of the community with their overlay
//	                     addresses and paths, or how to become a member
//	GET /services, ...   placeholders for later pages ("coming soon")
//	GET /static/...      embedded CSS and icon; cached for a year when the
//	                     URL carries the content hash (?h=...), else revalidated
//	GET /api/v1/status   JSON: version, board, node_name, node_id, uptime_s
//	                     (integer seconds) and components
//	GET /api/v1/overlay/peers
//	                     JSON list of every member, this box included:
//	                     name, node_id, ipv4, ipv6, groups, self, endpoints
//	                     (underlay endpoints the member reported), and the
//	                     live path: endpoint ("direct 192.0.2.2:51820",
//	                     "relay via b3", with " (unconfirmed)" for a guess,
//	                     or "none"), direct, via, rtt_ms (null if unknown),
//	                     rx_bytes, tx_bytes, last_handshake (RFC 3339 or
//	                     null); the live fields are zero for this box. 503
//	                     while the overlay does not run.
//	POST /api/v1/overlay/revoke
//	                     {"node_id": "...", "reason": "..."} (Content-Type
//	                     application/json): revokes the member with the
//	                     root key; 403 on boxes without it. Only for
//	                     administrators.
//	GET /gateway         the community's gateways, this box's gateway and
//	                     its users, and a form for a proxy credential
//	GET /api/v1/proxy    JSON GatewayInfo: this box's gateway (state, limits,
//	                     stats with users, traffic and quota), the local
//	                     port (address, gateway in use, counters) and the
//	                     community's gateways, best first
//	POST /api/v1/proxy/credentials
//	                     201 CredentialInfo: a proxy credential for the
//	                     account of the request, signed by this box
//	GET /proxy.pac, /wpad.dat
//	                     the proxy auto-config file (public)
//	GET /metrics         Prometheus text format, cloudbox_overlay_*,
//	                     cloudbox_proxy_* and cloudbox_gateway_* included
//	GET /healthz         200 "ok"
//
// # Accounts and the first boot
//
// Every page and endpoint but the login, the wizard, /static/, /healthz and
// a reduced /api/v1/status needs an account: a session cookie from the
// login (with a CSRF token on every change) or an API token (Authorization:
// Bearer); see auth.go for who may do what. Until the first-boot wizard is
// done, pages lead to it; it needs the setup code that Run logs and writes
// to [Config.SetupCodeFile], then sets the administrator, the box's name and
// location, and founds or joins a community. Accounts, tokens and the box
// settings live in <state dir>/panel ([PanelDir]); removing that directory
// is the panel's factory reset.
//
// With [Config.HTTPSAddr] the panel and API also answer over HTTPS, with a
// certificate of the box's own, name-constrained certificate authority in
// <state dir>/tls ([TLSDir]); /certificate offers the authority to
// browsers, and browsers that used HTTPS are redirected to it from HTTP
// pages (https.go, tlscert.go). Settings, the in-memory Logs, the encrypted
// backup and its restore (which ends Run with [ErrRestart]) are in
// settings.go, logs.go and backup*.go; the panel's languages in i18n.go.
//
// Errors under /api/v1/ are JSON objects {"error": "..."}: 404 for an unknown
// path, 405 (with Allow) for a wrong method. Every response carries
// X-Content-Type-Options, a Content-Security-Policy allowing only 'self',
// Referrer-Policy and X-Frame-Options.
//
// # Components
//
// The "components" object of /api/v1/status, also shown on the dashboard,
// maps a component name to a [ComponentStatus]: {"ok": bool, "error":
// string (only when not ok), "detail": {string: string} (optional)}. Each
// entry comes from a [StatusFunc] called per request. Run registers its own
// components and those in Config.Components:
//
//   - "state": the state directory, ok while node.json is a regular file
//     there, with detail "dir";
//   - "overlay": while the overlay runs, ok with detail community, ipv4,
//     ipv6 (with prefix lengths), peers and direct (counts); otherwise not
//     ok with detail state ("not a member: ...", "joining community ...",
//     "disabled", "failed", ...) and, when something is wrong, an error
//     that says what to do;
//   - "gateway": state of this box's gateway ("off ...", "waiting for the
//     overlay", "serving"), the number of healthy gateways of the
//     community and the local port's address;
//   - "https": ok with detail addr and ca_sha256 while HTTPS serves (or
//     detail https "off"); not ok, with the reason, when it cannot listen,
//     in which case the panel answers over HTTP only;
//   - "stream": live streaming (package stream), ok with detail ice_port
//     and the counts of streams, relayed streams and viewers; not ok when
//     its UDP/TCP port (StreamConfig.ICEAddr) cannot be opened, which
//     leaves the rest of the daemon running.
//
// The package does not log requests and writes no log files; it keeps the
// recent records of its logger in memory for the Logs page.
package appliance
