// Package appliance wires cloudbox's components into the daemon that runs on a
// box, cloudboxd: the node identity in the state directory (package
// appliance/state), the HTTP API under /api/v1, Prometheus metrics and the web
// panel. It is the only package (with image) that knows about gokrazy and
// /perm; feature packages receive a Config and never import appliance.
//
// [Run] is the whole daemon: it opens the state, serves HTTP until its context
// is cancelled, then shuts the server down gracefully.
//
// # HTTP
//
//	GET /                the dashboard, rendered on the server (no JavaScript)
//	GET /community, ...  placeholders for later pages ("coming soon")
//	GET /static/...      embedded CSS and icon; cached for a year when the
//	                     URL carries the content hash (?h=...), else revalidated
//	GET /api/v1/status   JSON: version, board, node_name, node_id, uptime_s
//	                     (integer seconds) and components
//	GET /metrics         Prometheus text format
//	GET /healthz         200 "ok"
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
// components (today "state": the state directory, ok while node.json is a
// regular file there, with detail "dir") and those in Config.Components; as
// later capabilities (overlay, services, ...) are wired into Run, each adds
// its entry the same way.
//
// The package does not log requests and writes no log files.
package appliance
