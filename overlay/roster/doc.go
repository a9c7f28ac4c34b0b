// Package roster is the control plane of the overlay: it decides who the
// overlay's peers are. A Roster holds the verified members of a community
// with their underlay endpoints, admits new boxes (the join protocol),
// keeps members in sync with each other by anti-entropy, spreads
// revocations and invitation redemptions, and, on boxes that hold the
// community root key, renews certificates. There is no central server:
// every member holds the whole roster and any member can admit a new box.
//
// It does not move packets, find paths or punch holes (package overlay and
// overlay/transport do; the daemon hands Peers to overlay.Engine.SetPeers),
// does not choose addresses or issue invitations (overlay/membership), and
// does not authenticate callers of its snapshot handler: the daemon serves
// Handler only on the overlay address, where WireGuard did.
//
// # Trust
//
// Everything that matters is signed and verified against the Community the
// daemon passes in, the only trust anchor: membership chains
// (membership.VerifyMembership, at every arrival of a chain this roster
// does not hold yet), revocation lists (RevocationList.Verify, once when a
// newer one arrives) and redemption records (Redemptions.Merge). A member
// relaying a snapshot can therefore neither add nor revoke members. What is
// not signed is a record's endpoints, its Updated time and RelayOK: they
// are self-reported and relayed, so a member could spread wrong endpoints
// of another. That costs reachability, not security (WireGuard
// authenticates every peer by its node key and disco learns real paths),
// and an Updated more than membership.ClockSkew in the future is refused so
// that a forged record cannot pin old endpoints forever.
//
// # Merge rules
//
// A record arriving by Apply, by a join, or from the roster file is merged
// as follows; refusals are counted in Stats by Reason.
//
//   - A chain must verify at Now against the community and the current
//     revocation list, and if it was issued with an invitation, that
//     invitation must not have been redeemed by another node key (the
//     record is then added to the redemptions): the first redemption a box
//     sees wins.
//   - For one node key, the chain with the later NotAfter wins, so renewed
//     certificates replace older ones; an equal or earlier one is ignored.
//   - The endpoints with the later Updated win (Updated is the member's own
//     clock: newest wins). This box's own record is never taken from
//     others: it is built from Config.SelfEndpoints with Updated = Now for
//     every snapshot served. A renewed chain for this box's node key is
//     adopted as its own membership and saved (Store.SaveMembership).
//   - A newer revocation list (higher sequence) replaces the current one
//     and drops the members it revokes at once.
//   - Members stay until they are revoked or their certificate ends; a
//     member that was not heard of (no newer Updated) for
//     Config.EndpointTTL keeps its record but loses its endpoints until it
//     is heard of again.
//   - A roster holds at most Config.MaxMembers (at most MaxMembers, 4096)
//     members, and their records, each counted with room for
//     MaxEndpoints endpoints, must fit a snapshot with room to spare for
//     the revocation list: about 4,096 typical members, or 2,400 with the
//     longest possible names and groups.
//
// # Join
//
// A new box redeems its invitation locally (membership.Invitation.Issue),
// then calls Join, which POSTs to JoinPath of a bootstrap member over the
// underlay:
//
//	{"version": 1, "membership": "<standard base64 of the Membership>",
//	 "endpoints": ["192.0.2.7:51820", "[2001:db8::7]:51820"], "relay": true}
//
// at most MaxJoinRequestSize bytes, no other fields, at most MaxEndpoints
// endpoints, "relay" optional. The member checks it with
// membership.Redemptions.Redeem (or VerifyMembership for a chain the root
// key signed: a member rejoining), adds the record, saves, and answers 200
// with its Snapshot. Refusals are JSON, {"error": "what happened; what to
// do"}, with status 400 (malformed), 403 (invitation or certificate
// expired, with the time; revoked; not valid for this community), 405
// (method), 409 (invitation redeemed by another node key), 413 (body too
// large), 429 (rate limit, with Retry-After) or 503 (roster full).
//
// The join handler is reachable from the underlay and therefore rate-limited
// per source (IPv4 address or IPv6 /64). Its answer travels unauthenticated
// over the underlay: a machine in the middle cannot add members or forge
// revocations (all signed), but it can withhold or alter endpoints; the
// next anti-entropy round over the overlay repairs that.
//
// # Anti-entropy
//
// Run fetches, every Config.Interval, the snapshot (GET SnapshotPath over
// the overlay) of Config.Fanout random members and applies it. Chains a
// roster already holds are not verified again, so a round costs signature
// checks only for what changed.
//
// # Snapshot encoding
//
// Binary, big-endian and canonical like the encodings of
// overlay/membership: DecodeSnapshot accepts exactly the bytes Encode
// produces for a valid snapshot, rejects trailing bytes, and allocates in
// proportion to its input. At most MaxSnapshotSize (4 MiB):
//
//	"CBS1" 1 | community id [10]
//	| u16 count (at most 4096) × record, strictly ascending by node key
//	| u32 length, revocation list (0: none)
//	| u32 count × (u16 length, membership), redemption records strictly
//	  ascending by invitation id, each issued with an invitation
//
//	record: u16 length, membership | updated u64 | flags u8
//	        | u8 count (at most 8) × endpoint
//	endpoint: family u8 (4 or 6) | address [4 or 16] | port u16
//
// updated is Unix nanoseconds up to the year 2261, 0 for never (and then no
// endpoints and no flags). flags bit 0 is RelayOK; the other bits are zero.
// Endpoints are unicast without zone, IPv4 never as IPv4-mapped IPv6, port
// not 0, none twice. Memberships and the revocation list are the encodings
// of overlay/membership. A redemption record that a record's chain already
// carries (same invitation, same node key) is left out.
//
// # Files
//
// With Config.Store the roster keeps, in the store's directory, the
// revocation list, the redemptions and this box's renewed membership
// through the Store, and RosterFile (roster.bin): the records of the other
// members as a snapshot without revocation list and redemptions, written
// atomically (internal/atomicfile) when members or endpoints change. New
// loads them and verifies every record again.
package roster
