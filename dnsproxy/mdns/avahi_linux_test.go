package mdns

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/testenv"
	"golang.org/x/sys/unix"
)

// avahi is a real avahi-daemon in a namespace with a private D-Bus, so
// that it never meets the host's avahi or D-Bus: a dbus-daemon listening
// on a socket in the test's directory, and avahi-daemon in its own mount
// namespace with a tmpfs on /run (pid file and socket) and an empty
// services directory.
type avahi struct {
	ns  *netnstest.NS
	bus string // DBUS_SYSTEM_BUS_ADDRESS=...
	log *netnstest.Buffer
}

const dbusConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

const avahiConfig = `[server]
host-name=%s
domain-name=local
use-ipv4=yes
use-ipv6=yes
allow-interfaces=%s
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
publish-addresses=yes
[reflector]
enable-reflector=no
`

// startDaemon starts args in ns with env added and stops it (SIGTERM,
// then SIGKILL after 5 s) when the test ends.
func startDaemon(t *testing.T, ns *netnstest.NS, env []string, args ...string) (*netnstest.Buffer, <-chan struct{}, *os.Process) {
	t.Helper()
	cmd := ns.Command(context.Background(), args...)
	cmd.Env = append(os.Environ(), env...)
	out := &netnstest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", args[0], err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return out, done, cmd.Process
}

// startAvahi runs dbus-daemon and avahi-daemon (host name host, on ifName)
// in ns.
func startAvahi(t *testing.T, ns *netnstest.NS, host, ifName string) *avahi {
	t.Helper()
	testenv.RequireCommand(t, "avahi-daemon", "avahi-daemon")
	testenv.RequireCommand(t, "avahi-browse", "avahi-utils")
	testenv.RequireCommand(t, "dbus-daemon", "dbus-daemon")
	testenv.RequireCommand(t, "unshare", "util-linux")
	dir := t.TempDir()
	sock := filepath.Join(dir, "bus")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dbusConf := write("dbus.conf", fmt.Sprintf(dbusConfig, sock))
	avahiConf := write("avahi.conf", fmt.Sprintf(avahiConfig, host, ifName))
	services := filepath.Join(dir, "services")
	if err := os.Mkdir(services, 0o755); err != nil {
		t.Fatal(err)
	}
	a := &avahi{ns: ns, bus: "DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + sock}
	dbusLog, _, _ := startDaemon(t, ns, nil, "dbus-daemon", "--config-file="+dbusConf, "--nofork", "--nopidfile")
	netnstest.WaitFor(t, 10*time.Second, func() string {
		if _, err := os.Stat(sock); err != nil {
			return "dbus-daemon does not listen: " + dbusLog.String()
		}
		return ""
	})
	script := fmt.Sprintf("mount -t tmpfs none /run && mkdir /run/avahi-daemon && mount --bind %s /etc/avahi/services && "+
		"exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f %s", services, avahiConf)
	var done <-chan struct{}
	a.log, done, _ = startDaemon(t, ns, []string{a.bus}, "unshare", "-m", "sh", "-c", script)
	netnstest.WaitFor(t, 15*time.Second, func() string {
		select {
		case <-done:
			t.Fatalf("avahi-daemon exited:\n%s", a.log.String())
		default:
		}
		if !strings.Contains(a.log.String(), "Server startup complete") {
			return "avahi-daemon does not start:\n" + a.log.String()
		}
		return ""
	})
	return a
}

// run runs an avahi client tool in the namespace with the private bus.
func (a *avahi) run(args ...string) (string, error) {
	return a.ns.Try(append([]string{"env", a.bus}, args...)...)
}

// browsed is one resolved line of `avahi-browse -p -r`.
type browsed struct {
	Proto, Instance, Type, Host, Addr, Port, TXT string
}

// browse returns the services avahi-browse -a -r -t -p -k resolves now.
func (a *avahi) browse(t *testing.T) []browsed {
	t.Helper()
	out, err := a.run("avahi-browse", "-a", "-r", "-t", "-p", "-k")
	if err != nil {
		t.Fatalf("avahi-browse: %v\n%s", err, out)
	}
	var bs []browsed
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(l, ";")
		if len(f) < 10 || f[0] != "=" {
			continue
		}
		bs = append(bs, browsed{Proto: f[2], Instance: unescape(f[3]), Type: f[4], Host: f[6], Addr: f[7], Port: f[8], TXT: f[9]})
	}
	return bs
}

// runIn runs r in ns: on a locked thread moved into the namespace, so that
// Run opens its sockets there. The thread is never unlocked and ends with
// the goroutine. The returned stop cancels Run and waits for it (at most
// 10 s); it is also called when the test ends.
func runIn(t *testing.T, ns *netnstest.NS, r *Responder) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns.Name)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			errc <- fmt.Errorf("entering %s: %w", ns.Name, err)
			return
		}
		errc <- r.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run does not return 10 s after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestAvahiInterop runs the responder against a real avahi-daemon on the
// same LAN segment:
//
//	ns box (Responder "cbbox1")        ns lan (avahi-daemon "lanpc", dbus-daemon,
//	eth0 192.0.2.1/24  <--- veth --->  eth0 192.0.2.2/24   avahi-browse/-resolve/-publish, dig)
//	     + fe80:: link-local                 + fe80:: link-local
//
// avahi and the responder speak mDNS over IPv4 and IPv6.
func TestAvahiInterop(t *testing.T) {
	box := netnstest.New(t, "mdbox")
	lan := netnstest.New(t, "mdlan")
	netnstest.Veth(t, box, "eth0", "192.0.2.1/24", lan, "eth0", "192.0.2.2/24")
	av := startAvahi(t, lan, "lanpc", "eth0")
	// IPv6 multicast can be sent once the link-local address passed DAD.
	netnstest.WaitFor(t, 10*time.Second, func() string {
		out := box.IP("-6", "addr", "show", "dev", "eth0", "scope", "link")
		if !strings.Contains(out, "fe80") || strings.Contains(out, "tentative") {
			return "no usable link-local address on the box: " + out
		}
		return ""
	})

	services := []Service{
		{Instance: "Box Panel", Type: "_http._tcp", Port: 80, TXT: []string{"path=/"}},
		{Instance: "Community Wiki", Type: "_http._tcp", Host: "box2-cb", Port: 8080, TXT: []string{"owner=box2", "path=/wiki"},
			Addrs: []netip.Addr{netip.MustParseAddr("198.51.100.7")}},
	}
	var mu sync.Mutex
	logs := &netnstest.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("responder log:\n%s", logs.String())
		}
	})
	r, err := New(Config{
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Interface: "eth0", Hostname: "cbbox1", Browse: []string{"_ipp._tcp"},
		Services: func() []Service { mu.Lock(); defer mu.Unlock(); return slices.Clone(services) },
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stop := runIn(t, box, r)

	t.Run("avahi-browse sees own and community services", func(t *testing.T) {
		// avahi browses over IPv4 and IPv6 mDNS; both see both services.
		var want []browsed
		for _, proto := range []string{"IPv4", "IPv6"} {
			want = append(want,
				browsed{Proto: proto, Instance: "Box Panel", Type: "_http._tcp", Host: "cbbox1.local", Addr: "192.0.2.1", Port: "80", TXT: `"path=/"`},
				browsed{Proto: proto, Instance: "Community Wiki", Type: "_http._tcp", Host: "box2-cb.local", Addr: "198.51.100.7", Port: "8080", TXT: `"path=/wiki" "owner=box2"`})
		}
		var got []browsed
		netnstest.WaitFor(t, 30*time.Second, func() string {
			got = av.browse(t)
			for _, w := range want {
				if !slices.Contains(got, w) {
					return fmt.Sprintf("avahi-browse lacks %+v; has %+v", w, got)
				}
			}
			return ""
		})
		t.Logf("avahi-browse resolved both services %v after the responder started", time.Since(start).Round(time.Millisecond))
	})

	t.Run("avahi-resolve resolves the box and the remote host", func(t *testing.T) {
		for name, addr := range map[string]string{"cbbox1.local": "192.0.2.1", "box2-cb.local": "198.51.100.7"} {
			out, err := av.run("timeout", "10", "avahi-resolve", "-4", "-n", name)
			if err != nil || !strings.Contains(out, addr) {
				t.Errorf("avahi-resolve -n %s: %v %q, want %s", name, err, out, addr)
			}
		}
		out, err := av.run("timeout", "10", "avahi-resolve", "-a", "192.0.2.1")
		if err != nil || !strings.Contains(out, "cbbox1.local") {
			t.Errorf("avahi-resolve -a 192.0.2.1: %v %q", err, out)
		}
	})

	t.Run("legacy unicast with dig", func(t *testing.T) {
		testenv.RequireCommand(t, "dig", "dnsutils")
		out, err := lan.Try("dig", "+time=2", "+tries=2", "-p", "5353", "@192.0.2.1", "cbbox1.local", "A")
		if err != nil || !strings.Contains(out, "cbbox1.local.\t\t10\tIN\tA\t192.0.2.1") || !strings.Contains(out, "status: NOERROR") {
			t.Errorf("dig: %v\n%s", err, out)
		}
	})

	t.Run("update announces a new service", func(t *testing.T) {
		mu.Lock()
		services = append(services, Service{Instance: "Late Stream", Type: "_rtsp._tcp", Port: 554})
		mu.Unlock()
		began := time.Now()
		r.Update()
		netnstest.WaitFor(t, 20*time.Second, func() string {
			for _, b := range av.browse(t) {
				if b.Instance == "Late Stream" && b.Port == "554" {
					return ""
				}
			}
			return "avahi-browse does not show Late Stream"
		})
		t.Logf("avahi-browse saw the update after %v", time.Since(began).Round(time.Millisecond))
	})

	t.Run("a service published by avahi is found and goes with its goodbye", func(t *testing.T) {
		testenv.RequireCommand(t, "avahi-publish", "avahi-utils")
		began := time.Now()
		pubLog, pubDone, pub := startDaemon(t, lan, []string{av.bus}, "avahi-publish", "-s", "LAN Printer", "_ipp._tcp", "631", "rp=ipp/print", "note=hello world")
		want := Found{Instance: "LAN Printer", Type: "_ipp._tcp", Host: "lanpc.local.",
			Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.2")}, Port: 631, TXT: []string{"rp=ipp/print", "note=hello world"}}
		waitFound(t, r, 30*time.Second, func(fs []Found) string {
			if len(fs) == 1 && sameFound(fs, []Found{want}) {
				return ""
			}
			return fmt.Sprintf("found %+v, want %+v; avahi-publish: %s", fs, want, pubLog.String())
		})
		t.Logf("found the avahi service %v after avahi-publish started", time.Since(began).Round(time.Millisecond))
		began = time.Now()
		pub.Signal(syscall.SIGTERM) // ip netns exec and env exec it: this is avahi-publish
		select {
		case <-pubDone:
		case <-time.After(10 * time.Second):
			t.Fatal("avahi-publish does not exit on SIGTERM")
		}
		waitFound(t, r, 10*time.Second, func(fs []Found) string {
			if len(fs) != 0 {
				return fmt.Sprintf("still found %+v after avahi-publish ended", fs)
			}
			return ""
		})
		t.Logf("the service was gone %v after avahi-publish ended", time.Since(began).Round(time.Millisecond))
	})

	t.Run("goodbyes on stop", func(t *testing.T) {
		stop()
		netnstest.WaitFor(t, 10*time.Second, func() string {
			for _, b := range av.browse(t) {
				if strings.HasPrefix(b.Host, "cbbox1") || strings.HasPrefix(b.Host, "box2-cb") {
					return fmt.Sprintf("avahi still lists %+v after the responder stopped", b)
				}
			}
			return ""
		})
		var sb strings.Builder
		if err := r.WriteMetrics(&sb); err != nil {
			t.Fatal(err)
		}
		m := metrics(sb.String())
		if m["cloudbox_mdns_goodbyes_total"] < m["cloudbox_mdns_records"] || m["cloudbox_mdns_records"] < 10 ||
			m["cloudbox_mdns_malformed_packets_total"] != 0 || m["cloudbox_mdns_send_errors_total"] != 0 {
			t.Errorf("metrics: want goodbyes for every record (10+), nothing malformed, no send errors:\n%s", sb.String())
		}
		buf := make([]byte, 1<<20)
		if s := string(buf[:runtime.Stack(buf, true)]); strings.Contains(s, "mdns.(*conn).read") {
			t.Errorf("a reader goroutine outlived Run:\n%s", s)
		}
	})
}

// metrics parses Prometheus text into name -> value.
func metrics(text string) map[string]float64 {
	m := map[string]float64{}
	for _, l := range strings.Split(text, "\n") {
		var name string
		var v float64
		if _, err := fmt.Sscanf(l, "%s %g", &name, &v); err == nil && !strings.HasPrefix(l, "#") {
			m[name] = v
		}
	}
	return m
}

// waitFound waits until check accepts r.Found, woken by FoundChanged.
func waitFound(t *testing.T, r *Responder, timeout time.Duration, check func([]Found) string) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		why := check(r.Found())
		if why == "" {
			return
		}
		select {
		case <-r.FoundChanged():
		case <-time.After(time.Second):
		case <-deadline:
			t.Fatalf("after %v: %s", timeout, why)
		}
	}
}
