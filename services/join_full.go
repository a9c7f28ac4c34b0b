//go:build !router

package services

import "github.com/hashicorp/memberlist"

// join has memberlist push/pull state with each of addrs (a join). It
// returns how many answered, and an error only when none did.
func join(ml *memberlist.Memberlist, addrs []memberlist.Address) (int, error) {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.Name + "/" + a.Addr // Join's "name/ip:port"
	}
	return ml.Join(s)
}
