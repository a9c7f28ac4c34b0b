package proxy

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/testenv"
)

// loopback is what the positive tests allow as destinations: their origins
// listen on loopback, which the default rules deny.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// box is a community member that issues credentials.
type box struct {
	id   string
	priv [32]byte
	pub  [32]byte
}

func newBox(t testing.TB, id string) box {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := box{id: id}
	copy(b.priv[:], k.Bytes())
	copy(b.pub[:], k.PublicKey().Bytes())
	return b
}

func (b box) issue(t testing.TB, user string, valid time.Duration) string {
	t.Helper()
	tok, err := IssueCredential(b.priv, b.id, user, time.Now().Add(valid))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// keysOf is a Config.Keys over boxes.
func keysOf(boxes ...box) func(string) ([32]byte, bool) {
	return func(id string) ([32]byte, bool) {
		for _, b := range boxes {
			if b.id == id {
				return b.pub, true
			}
		}
		return [32]byte{}, false
	}
}

// origin is a test destination on loopback: /small answers 100 bytes,
// /big?n=N N bytes, and it records the last request's header.
type origin struct {
	*httptest.Server
	mu      sync.Mutex
	last    http.Header
	hits    int
	remotes map[string]bool // client addresses seen
}

func newOrigin(t *testing.T, tls bool) *origin {
	t.Helper()
	o := &origin{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.last, o.hits = r.Header.Clone(), o.hits+1
		if o.remotes == nil {
			o.remotes = make(map[string]bool)
		}
		o.remotes[r.RemoteAddr] = true
		o.mu.Unlock()
		n := 100
		if r.URL.Path == "/big" {
			n, _ = strconv.Atoi(r.URL.Query().Get("n"))
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Header().Set("Connection", "X-Origin-Private")
		w.Header().Set("X-Origin-Private", "hop")
		buf := make([]byte, 32<<10)
		for i := range buf {
			buf[i] = 's'
		}
		for n > 0 {
			m := min(n, len(buf))
			if _, err := w.Write(buf[:m]); err != nil {
				return
			}
			n -= m
		}
	})
	if tls {
		o.Server = httptest.NewTLSServer(h)
	} else {
		o.Server = httptest.NewServer(h)
	}
	t.Cleanup(o.Close)
	return o
}

func (o *origin) port() uint16 {
	return uint16(o.Listener.Addr().(*net.TCPAddr).Port)
}

func (o *origin) conns() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.remotes)
}

func (o *origin) lastHeader() (http.Header, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last, o.hits
}

// startProxy runs a Proxy on loopback ports until the test ends, then
// checks that Run returned and left no goroutine behind.
func startProxy(t testing.TB, cfg Config) (p *Proxy, httpAddr, socksAddr string) {
	t.Helper()
	cfg.HTTPAddrs = []string{"127.0.0.1:0"}
	cfg.SOCKSAddrs = []string{"127.0.0.1:0"}
	if cfg.LocalNets == nil {
		cfg.LocalNets = []netip.Prefix{} // the test machine's LAN is not the point
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		cancel()
		t.Fatal("proxy not ready after 5 s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return 10 s after cancel")
		}
		checkNoLeaks(t)
	})
	h, s := p.Addrs()
	return p, h[0].String(), s[0].String()
}

// checkNoLeaks fails when goroutines of this package (other than the
// caller's) or of an HTTP client connection are still running.
func checkNoLeaks(t testing.TB) {
	t.Helper()
	var leaked []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		leaked = leaked[:0]
		for i, g := range strings.Split(string(buf), "\n\n") {
			if i == 0 { // this goroutine
				continue
			}
			if strings.Contains(g, "cloudbox/services/proxy.(*") || strings.Contains(g, "net/http.(*persistConn)") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return
		}
	}
	t.Errorf("%d goroutines leaked:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
}

// curlResult is what a curl run gave: the -w output, the body and the exit code.
type curlResult struct {
	code int // %{http_code}: the final response, or the proxy's
	body string
	exit int
	took time.Duration
}

// curl runs curl with args (and a bounded time) and returns its result.
func curl(t *testing.T, args ...string) curlResult {
	t.Helper()
	bin := testenv.RequireCommand(t, "curl", "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append([]string{"-s", "-S", "--max-time", "20", "--noproxy", "", "-w", "\n%{http_code} %{http_connect}"}, args...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // no *_proxy variables
	start := time.Now()
	out, err := cmd.Output()
	r := curlResult{took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.exit = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	r.body = s[:max(i, 0)]
	var code, connect int
	fmt.Sscanf(s[i+1:], "%d %d", &code, &connect)
	r.code = code
	if connect != 0 && code == 0 || connect >= 300 {
		r.code = connect
	}
	return r
}
