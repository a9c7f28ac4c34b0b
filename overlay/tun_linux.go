package overlay

import "golang.zx2c4.com/wireguard/tun"

// createTUN creates the interface. wireguard-go enables TSO/GRO offloads
// (IFF_VNET_HDR) when the kernel supports them.
func createTUN(name string, mtu int) (tun.Device, error) {
	return tun.CreateTUN(name, mtu)
}
