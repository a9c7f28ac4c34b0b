package services

import (
	"bufio"
	"crypto/ecdh"
	"fmt"
	"github.com/cloudbox/cloudbox/internal/testenv"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudbox/cloudbox/internal/xeddsa"
)

// testKey returns a deterministic X25519 key pair for member i.
func testKey(t testing.TB, i int) (priv, pub [32]byte) {
	t.Helper()
	for j := range priv {
		priv[j] = byte(i*31 + j + 1)
	}
	k, err := ecdh.X25519().NewPrivateKey(priv[:])
	if err != nil {
		t.Fatal(err)
	}
	copy(pub[:], k.PublicKey().Bytes())
	return priv, pub
}

// testMember returns member i with documentation-range addresses.
func testMember(t testing.TB, i int) (Member, [32]byte) {
	priv, pub := testKey(t, i)
	return Member{
		NodeID:  fmt.Sprintf("node%03d", i),
		Name:    fmt.Sprintf("box%d", i),
		NodeKey: pub,
		IPv4:    netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}),
		IPv6:    netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i+1)),
	}, priv
}

func testSigner(t testing.TB, priv [32]byte) *xeddsa.Signer {
	t.Helper()
	s, err := xeddsa.NewSigner(priv[:])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// metric returns the value of one sample line ("name{labels}") of c's
// metrics, failing the test when it is absent.
func metric(t testing.TB, c *Catalog, sample string) int64 {
	t.Helper()
	var sb strings.Builder
	c.WriteMetrics(&sb)
	sc := bufio.NewScanner(strings.NewReader(sb.String()))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && name == sample {
			v, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sample, err)
			}
			return v
		}
	}
	t.Fatalf("metric %s missing in:\n%s", sample, sb.String())
	return 0
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return waitEvery(t, 20*time.Millisecond, d, what, cond)
}

// waitEvery polls cond every interval until it holds or d passes, and
// returns how long it took.
func waitEvery(t testing.TB, interval, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(interval)
	}
	return time.Since(start)
}

// checkGoroutines fails the test if the goroutine count does not return to
// what it was at the call within 15 s of the test's end (memberlist's
// timers exit shortly after Shutdown).
func checkGoroutines(t *testing.T) { testenv.CheckGoroutines(t, 15*time.Second) }

// cmpAddr compares netip.Addr values, whose fields are unexported.
var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
