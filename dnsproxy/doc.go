// Package dnsproxy will hold the box's DNS server: a caching forwarder, the
// authoritative community zone with DNS-SD records, and mDNS on the LAN. The
// foundation only reserves its place in the layout.
package dnsproxy
