package overlay

import "testing"

// TestTrimmer: memory is trimmed once, in the first quiet period after a
// burst; never while idle or during light traffic.
func TestTrimmer(t *testing.T) {
	var tr trimmer
	var n uint64
	for i, c := range []struct {
		packets uint64
		want    bool
	}{
		{0, false},              // idle
		{trimBurst / 10, false}, // light traffic
		{trimBurst, false},      // burst
		{trimBurst * 5, false},  // still
		{trimBurst - 1, true},   // quieter: trim
		{trimBurst / 10, false}, // trimmed already
		{0, false},              //
		{trimBurst * 2, false},  // a second burst
		{0, true},               // trim again
		{trimBurst / 2, false},  //
	} {
		n += c.packets
		if got := tr.tick(n); got != c.want {
			t.Errorf("tick %d (%d packets): trim %v, want %v", i, c.packets, got, c.want)
		}
	}
}
