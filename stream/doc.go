// Package stream will hold WebRTC live streaming and calls. The foundation
// only reserves its place in the layout.
package stream
