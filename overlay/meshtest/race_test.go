//go:build race

package meshtest

// raceEnabled builds the daemon with the race detector when the test runs
// with it.
const raceEnabled = true
