package appliance

import "testing"

func TestHasCapability(t *testing.T) {
	for _, tc := range []struct {
		status    string
		ok, known bool
	}{
		{"Name:\tx\nCapEff:\t000001ffffffffff\n", true, true},
		{"CapEff:\t0000000000000000\n", false, true},
		{"CapEff:\t0000000000001000\n", true, true},
		{"CapEff:\t0000000000000fff\n", false, true},
		{"CapInh:\t0\n", false, false},
		{"CapEff:\tzz\n", false, false},
	} {
		ok, known := hasCapability([]byte(tc.status), capNetAdmin)
		if ok != tc.ok || known != tc.known {
			t.Errorf("hasCapability(%q) = %v, %v, want %v, %v", tc.status, ok, known, tc.ok, tc.known)
		}
	}
}
