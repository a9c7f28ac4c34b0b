package openwrt

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudbox/cloudbox/internal/testenv"
)

// Stubs of the router's tools in the scratch root. Each logs its call to
// /log; rc.common (the interpreter of every init script) also keeps the
// rc.d link that enable and disable manage. uci's get finds nothing, so the
// scripts use their defaults.
const (
	stubUCI = `#!/bin/sh
echo "uci $*" >> /log
case " $* " in *" batch "*) cat >> /log ;; *" get "*) exit 1 ;; esac
exit 0
`
	stubRCCommon = `#!/bin/sh
name=$(basename "$1")
echo "init ${1%/etc/init.d/*} $name $2" >> /log
case "$2" in
enable) mkdir -p "${1%/init.d/*}/rc.d" && ln -sf "../init.d/$name" "${1%/init.d/*}/rc.d/S95$name" ;;
disable) rm -f "${1%/init.d/*}/rc.d/S95$name" ;;
esac
`
	stubInit = "#!/bin/sh /etc/rc.common\n"
)

// scratchRoot makes a root directory with busybox (and the host libraries
// it links), the stubs and the package's files, for chroot.
func scratchRoot(t *testing.T, pkgDir string) string {
	t.Helper()
	busybox := testenv.RequireCommand(t, "busybox", "busybox")
	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"bin", "sbin", "etc/init.d", "CONTROL", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, busybox, filepath.Join(root, "bin/busybox"), 0o755)
	// The libraries of a dynamically linked busybox (ldd prints nothing
	// useful for a static one).
	out, _ := exec.Command("ldd", busybox).Output()
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "/") {
			if err := os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755); err != nil {
				t.Fatal(err)
			}
			copyFile(t, f, filepath.Join(root, f), 0o755)
		}
	}
	for _, applet := range []string{"sh", "mkdir", "chmod", "rm", "cat", "ln", "basename", "echo"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	for p, content := range map[string]string{
		"sbin/uci": stubUCI, "etc/rc.common": stubRCCommon,
		"etc/init.d/firewall": stubInit, "etc/init.d/dnsmasq": stubInit,
		"dev/null": "", // a plain file does for the scripts' 2>/dev/null
	} {
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	install(t, pkgDir, root, "")
	return root
}

// install does opkg's part of an install or upgrade: the files of
// data.tar.gz into root+prefix, the control files into root/CONTROL.
func install(t *testing.T, pkgDir, root, prefix string) {
	t.Helper()
	dest := filepath.Join(root, prefix)
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, pkgDir, "tar", "-xzf", "data.tar.gz", "-C", dest)
	run(t, pkgDir, "tar", "-xzf", "control.tar.gz", "-C", filepath.Join(root, "CONTROL"))
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// script runs a maintainer script in the scratch root with env and
// returns what the stubs logged during it.
func script(t *testing.T, root, name string, env []string, args ...string) string {
	t.Helper()
	os.Remove(filepath.Join(root, "log"))
	cmd := exec.Command("chroot", append([]string{root, "/bin/sh", "/CONTROL/" + name}, args...)...)
	cmd.Env = append([]string{"PATH=/bin:/sbin"}, env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	log, _ := os.ReadFile(filepath.Join(root, "log"))
	return string(log)
}

func wantLog(t *testing.T, step, log string, want, notWant []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(log, w) {
			t.Errorf("%s: log lacks %q:\n%s", step, w, log)
		}
	}
	for _, w := range notWant {
		if strings.Contains(log, w) {
			t.Errorf("%s: log has %q:\n%s", step, w, log)
		}
	}
}

func exists(root, p string) bool {
	_, err := os.Lstat(filepath.Join(root, p))
	return err == nil
}

// TestMaintainerScripts runs the package's postinst and prerm as opkg
// does, in a chroot with busybox and stubbed uci and init scripts:
// install, the daemon writes state, upgrade keeps it, remove cleans up.
func TestMaintainerScripts(t *testing.T) {
	testenv.RequireRoot(t)
	b := routerBoards(t)[0]
	_, v1 := buildPackage(t, b, "v0.1.0")
	_, v2 := buildPackage(t, b, "v0.2.0")
	root := scratchRoot(t, v1)

	log := script(t, root, "postinst", nil, "configure")
	wantLog(t, "install", log, []string{
		"init  cloudbox enable", "init  cloudbox restart", "init  firewall reload", "init  dnsmasq reload",
		"add_list firewall.cloudbox.device='cb0'",
		"set firewall.cloudbox_overlay.dest_port='51820'", "set firewall.cloudbox_services.dest_port='7946 8080'",
		"uci add_list dhcp.@dnsmasq[0].server=/cb.home.arpa/127.0.0.1#5335",
	}, nil)
	if fi, err := os.Stat(filepath.Join(root, "etc/cloudbox")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("install: state directory: %v, %v; want mode 0700", fi, err)
	}
	if !exists(root, "etc/rc.d/S95cloudbox") {
		t.Errorf("install: service not enabled")
	}
	if exists(root, "etc/uci-defaults/90-cloudbox") {
		t.Errorf("install: uci-defaults script not removed after it ran")
	}
	// The daemon's state.
	if err := os.WriteFile(filepath.Join(root, "etc/cloudbox/node.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}

	install(t, v2, root, "")
	log = script(t, root, "postinst", nil, "configure")
	wantLog(t, "upgrade", log, []string{"init  cloudbox restart", "add_list firewall.cloudbox.device='cb0'"}, nil)
	if !exists(root, "etc/cloudbox/node.json") {
		t.Fatalf("upgrade lost the state in /etc/cloudbox")
	}
	// dpkg's convention, should opkg ever follow it: the old prerm with
	// "upgrade" keeps everything.
	if log := script(t, root, "prerm", nil, "upgrade"); log != "" || !exists(root, "etc/cloudbox/node.json") {
		t.Errorf("prerm upgrade did something: %q", log)
	}

	// An update over the mesh kept the previous daemon and left a
	// release that did not commit.
	for _, f := range []string{"usr/sbin/cloudboxd.prev", "usr/sbin/cloudboxd.new"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte("cloudboxd"), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	log = script(t, root, "prerm", nil, "remove")
	wantLog(t, "remove", log, []string{
		"init  cloudbox stop", "init  cloudbox disable", "uci -q delete firewall.cloudbox_overlay",
		"uci -q del_list dhcp.@dnsmasq[0].rebind_domain=cb.home.arpa", "init  firewall reload",
	}, nil)
	if exists(root, "etc/cloudbox") {
		t.Errorf("remove left /etc/cloudbox behind")
	}
	if exists(root, "etc/rc.d/S95cloudbox") {
		t.Errorf("remove left the service enabled")
	}
	if exists(root, "usr/sbin/cloudboxd.prev") || exists(root, "usr/sbin/cloudboxd.new") {
		t.Errorf("remove left the update agent's cloudboxd.prev or .new behind")
	}
}

// TestMaintainerScriptsImageBuild runs postinst as OpenWrt's image builder
// does, with IPKG_INSTROOT: the service is enabled inside the image, and
// nothing runs or changes on the build host.
func TestMaintainerScriptsImageBuild(t *testing.T) {
	testenv.RequireRoot(t)
	_, v1 := buildPackage(t, routerBoards(t)[0], "v0.1.0")
	root := scratchRoot(t, v1)
	install(t, v1, root, "img")

	log := script(t, root, "postinst", []string{"IPKG_INSTROOT=/img"}, "configure")
	wantLog(t, "image build", log, []string{"uci -q -c /img/etc/config get cloudbox.main.state_dir", "init /img cloudbox enable"},
		[]string{"restart", "reload", "batch"})
	if !exists(root, "img/etc/rc.d/S95cloudbox") || !exists(root, "img/etc/cloudbox") {
		t.Errorf("image build: service not enabled or no state directory in the image")
	}
	if !exists(root, "img/etc/uci-defaults/90-cloudbox") {
		t.Errorf("image build: the uci-defaults script must stay for the first boot")
	}
	if exists(root, "etc/cloudbox") || exists(root, "etc/rc.d") {
		t.Errorf("image build touched the build root")
	}
}
