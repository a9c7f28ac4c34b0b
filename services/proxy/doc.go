// Package proxy is a box's shared Internet gateway: an HTTP forward proxy
// (absolute-URI requests and CONNECT, RFC 9110 §9.3.6) and a SOCKS5 server
// (RFC 1928, username/password per RFC 1929) that members of the community
// use to reach the Internet through the uplink of a box that offers it.
//
// Clients authenticate with community accounts that need no central server:
// a member's box issues a credential (see [Credential]) signed with its
// X25519 node key (XEdDSA, internal/xeddsa), and every gateway verifies it
// with that box's public key from the roster ([Config.Keys]). Successful
// verifications are cached, so a gateway keeps serving a member while the
// issuing box is offline. The federation policy ([Config.Federation]) says
// whose users a gateway serves: the whole community, its own box's users,
// or a list of boxes.
//
// Access rules: clients only from allowed source networks; CONNECT only to
// allowed ports; no destination in the gateway's own LAN, the community's
// ranges, loopback or link-local unless explicitly allowed. Destinations are
// checked on the resolved address at dial time, so DNS rebinding cannot get
// around the rule. Fair use: per-user bandwidth (a token bucket on both
// directions), per-user concurrent connections, an optional daily quota and
// an overall bandwidth cap. Access logs are off unless [Config.AccessLog] is
// set; [AccessLog] keeps only the fields the owner chose, one file per day,
// for a bounded number of days.
//
// [RenderPAC] writes the proxy auto-config file that points clients to the
// nearest gateways; serving it (and WPAD) is the appliance's job, as are
// publishing the gateway in the catalog and forwarding a local port to the
// best gateway. The package caches nothing of what it relays.
package proxy
