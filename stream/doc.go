// Package stream is cloudbox's live streaming: WebRTC (pion/webrtc) ingest
// and playback with fan-out on one box, and relaying between boxes of the
// mesh.
//
// A [Server] holds the live streams of a box. A stream gets its media from
// one source at a time:
//
//   - a WHIP publisher (RFC 9725): a browser's camera, OBS, any WHIP client;
//   - plain RTP over UDP (ffmpeg, IP cameras): H.264 without B-frames, VP8
//     and Opus, checked so that a stream browsers cannot play is refused
//     with a message rather than shown as a black screen;
//   - another box (a relay): the server pulls the stream once over WHEP
//     from a source that Config.Sources names and re-attaches to the next
//     one when it fails.
//
// Viewers play with WHEP (draft-ietf-wish-whep). Every viewer has its own
// bounded queue and writer, so a slow viewer loses packets (and then waits
// for the next keyframe) instead of slowing the others. The last group of
// pictures is cached so that a new viewer starts on a keyframe at once;
// keyframe requests (PLI, FIR) from viewers travel upstream, rate-limited;
// NACKs are answered from one history shared by all viewers of a track,
// so repairs happen hop by hop without per-viewer copies.
//
// ICE uses host candidates only (the box's LAN and overlay addresses, no
// public STUN or TURN), over one UDP port and one TCP port shared by all
// sessions ([DefaultICEPort]).
//
// The package knows nothing of the panel, accounts or the catalog:
// package appliance authorizes requests, publishes streams in the
// community's catalog and supplies Config.Sources.
package stream
