package appliance

// StreamConfig configures live streaming (package stream). The zero value
// streams with the media on DefaultStreamICEAddr.
type StreamConfig struct {
	// ICEAddr is the UDP and TCP address of the media of every session;
	// zero means DefaultStreamICEAddr, "off" turns streaming off. When
	// the port is in use the stream component reports it and the rest
	// of the daemon runs on.
	ICEAddr string
	// TURNAddr is the UDP address of the built-in TURN server, for
	// browsers that reach the box only through a relay; zero means
	// ":3478", "off" runs none. The panel's pages give logged-in people
	// a credential.
	TURNAddr string
}
