package testenv

import (
	"runtime"
	"testing"
	"time"
)

// CheckGoroutines fails t if, after its cleanups, the goroutine count does
// not come back within wait to what it was at the call (libraries such as
// memberlist and pion stop some goroutines a little after they return).
// The stacks of all goroutines are in the failure.
func CheckGoroutines(t testing.TB, wait time.Duration) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(wait)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines leaked: %d before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
