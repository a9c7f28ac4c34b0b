package appliance

// MDNSConfig configures mDNS on the box's LAN (package dnsproxy/mdns): the
// box answers for "<name>.local", announces its own services and, as a
// discovery proxy, the community's, so that phones and laptops browsing
// the LAN see them; and it publishes to the catalog the LAN services of the
// types in Browse. Multicast never crosses the overlay. The zero value
// speaks mDNS on the first LAN interface and publishes nothing from the LAN.
type MDNSConfig struct {
	// Interface is the LAN interface. Zero means the first interface that
	// is up, supports multicast, has an IPv4 address and is neither
	// loopback nor the overlay's.
	Interface string
	// Browse are the service types ("_ipp._tcp") found on the LAN that
	// this box publishes to the community's catalog. Nil means none.
	Browse []string
	// Disabled turns mDNS off.
	Disabled bool
}
