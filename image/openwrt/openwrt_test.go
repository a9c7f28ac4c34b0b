package openwrt

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/internal/testenv"
	"github.com/cloudbox/cloudbox/services/update"
)

// sizeBudget is the budget for the router profile of cloudboxd on
// mipsle, stripped: it must fit a 16 MB flash with compression.
const sizeBudget = 10 << 20

const epoch = 1700000000

// routerBoards returns the router boards, failing if there are none.
func routerBoards(t *testing.T) []boards.Board {
	var out []boards.Board
	for _, b := range boards.All() {
		if b.IsRouter() {
			out = append(out, b)
		}
	}
	if len(out) != 4 {
		t.Fatalf("want 4 router boards, have %d", len(out))
	}
	return out
}

// daemons cross-compiles the router profile of cloudboxd once per board
// for all tests of the package.
var daemons = map[string]string{}

func daemon(t *testing.T, b boards.Board) string {
	t.Helper()
	if p, ok := daemons[b.Name]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "cloudbox-openwrt-test-")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "cloudboxd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := BuildDaemon(ctx, Config{Board: b, Version: "v0.1.0", SourceDir: testenv.ModuleRoot(t)}, p); err != nil {
		t.Fatalf("building cloudboxd for %s: %v", b.Name, err)
	}
	daemons[b.Name] = p
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, p := range daemons {
		os.RemoveAll(filepath.Dir(p))
	}
	os.Exit(code)
}

// run runs a command and returns its stdout, failing the test with its
// output on error.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// buildPackage writes the package of board b, version v, into a new
// directory and extracts it with tar there: debian-binary, data.tar.gz,
// control.tar.gz and the control files under CONTROL/.
func buildPackage(t *testing.T, b boards.Board, v string) (Result, string) {
	t.Helper()
	out := t.TempDir()
	res, err := Build(context.Background(), Config{Board: b, OutDir: out, Version: v, SourceDateEpoch: epoch, Binary: daemon(t, b)})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	run(t, out, "tar", "-xzf", res.Path)
	if err := os.Mkdir(filepath.Join(out, "CONTROL"), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, out, "tar", "-xzf", "control.tar.gz", "-C", "CONTROL")
	return res, out
}

func TestPackageStructure(t *testing.T) {
	for _, b := range routerBoards(t) {
		t.Run(b.Name, func(t *testing.T) {
			res, dir := buildPackage(t, b, "v0.1.0")
			want := filepath.Join(filepath.Dir(res.Path), "cloudbox_0.1.0_"+b.PackageArch+".ipk")
			if res.Path != want {
				t.Errorf("package path %s, want %s", res.Path, want)
			}
			if got := run(t, dir, "tar", "-tzf", res.Path); got != "./debian-binary\n./data.tar.gz\n./control.tar.gz\n" {
				t.Errorf("outer archive lists %q, want debian-binary, data.tar.gz, control.tar.gz (ipkg-build's order)", got)
			}
			if got, _ := os.ReadFile(filepath.Join(dir, "debian-binary")); string(got) != "2.0\n" {
				t.Errorf("debian-binary %q, want \"2.0\\n\"", got)
			}

			control, err := os.ReadFile(filepath.Join(dir, "CONTROL", "control"))
			if err != nil {
				t.Fatal(err)
			}
			fields := map[string]string{}
			for _, line := range strings.Split(string(control), "\n") {
				if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
					fields[k] = v
				}
			}
			dataSize := len(run(t, dir, "sh", "-c", "gzip -dc data.tar.gz"))
			for k, v := range map[string]string{
				"Package": "cloudbox", "Version": "0.1.0", "Architecture": b.PackageArch,
				"Depends": "kmod-tun", "Section": "net", "SourceDateEpoch": "1700000000",
				"Installed-Size": strconv.Itoa(dataSize),
			} {
				if fields[k] != v {
					t.Errorf("control field %s = %q, want %q", k, fields[k], v)
				}
			}
			if conffiles, _ := os.ReadFile(filepath.Join(dir, "CONTROL", "conffiles")); string(conffiles) != "/etc/config/cloudbox\n" {
				t.Errorf("conffiles %q", conffiles)
			}
			if got := run(t, dir, "tar", "-tzf", "control.tar.gz"); got != "./\n./conffiles\n./control\n./postinst\n./prerm\n" {
				t.Errorf("control.tar.gz lists %q", got)
			}
			wantData := "./\n./etc/\n./etc/config/\n./etc/config/cloudbox\n./etc/init.d/\n./etc/init.d/cloudbox\n" +
				"./etc/uci-defaults/\n./etc/uci-defaults/90-cloudbox\n./lib/\n./lib/upgrade/\n./lib/upgrade/keep.d/\n" +
				"./lib/upgrade/keep.d/cloudbox\n./usr/\n./usr/sbin/\n./usr/sbin/cloudboxd\n"
			if got := run(t, dir, "tar", "-tzf", "data.tar.gz"); got != wantData {
				t.Errorf("data.tar.gz lists\n%s\nwant\n%s", got, wantData)
			}
			modes := run(t, dir, "tar", "-tvzf", "data.tar.gz")
			for _, want := range []string{"-rwxr-xr-x 0/0", "-rw------- 0/0"} {
				if !strings.Contains(modes, want) {
					t.Errorf("data.tar.gz has no %q entry:\n%s", want, modes)
				}
			}

			// Scripts parse; the binary is for the board.
			root := filepath.Join(dir, "root")
			os.Mkdir(root, 0o755)
			run(t, dir, "tar", "-xzf", "data.tar.gz", "-C", root)
			for _, s := range []string{"root/etc/init.d/cloudbox", "root/etc/uci-defaults/90-cloudbox", "CONTROL/postinst", "CONTROL/prerm"} {
				run(t, dir, "sh", "-n", s)
			}
			checkELF(t, b, filepath.Join(root, "usr/sbin/cloudboxd"))
		})
	}
}

// checkELF checks that the file at p is a static executable for b's
// architecture.
func checkELF(t *testing.T, b boards.Board, p string) {
	t.Helper()
	f, err := elf.Open(p)
	if err != nil {
		t.Fatalf("cloudboxd is not ELF: %v", err)
	}
	defer f.Close()
	machine := map[string]elf.Machine{"mipsle": elf.EM_MIPS, "mips": elf.EM_MIPS, "arm": elf.EM_ARM, "arm64": elf.EM_AARCH64}[b.GOARCH]
	if f.Machine != machine {
		t.Errorf("cloudboxd is for %v, want %v", f.Machine, machine)
	}
	if big := b.GOARCH == "mips"; big != (f.Data == elf.ELFDATA2MSB) {
		t.Errorf("cloudboxd byte order %v, wrong for %s", f.Data, b.GOARCH)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("cloudboxd is dynamically linked: the routers' musl cannot run it")
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("cloudboxd is not stripped")
	}
}

// TestPackageReproducible builds the same package twice.
func TestPackageReproducible(t *testing.T) {
	b := routerBoards(t)[0]
	r1, _ := buildPackage(t, b, "v0.1.0")
	r2, _ := buildPackage(t, b, "v0.1.0")
	if r1.SHA256 != r2.SHA256 || r1.Size != r2.Size {
		t.Errorf("two builds differ: %s (%d bytes) and %s (%d bytes)", r1.SHA256, r1.Size, r2.SHA256, r2.Size)
	}
}

// TestRouterDaemonRuns starts each router cloudboxd under qemu-user:
// --version prints the stamped version.
func TestRouterDaemonRuns(t *testing.T) {
	for _, b := range routerBoards(t) {
		t.Run(b.Name, func(t *testing.T) {
			qemu := testenv.RequireCommand(t, b.QEMUUser, "qemu-user-static")
			if got := strings.TrimSpace(run(t, "", qemu, daemon(t, b), "--version")); got != "v0.1.0" {
				t.Errorf("cloudboxd --version under %s: %q, want v0.1.0", b.QEMUUser, got)
			}
		})
	}
}

// TestRouterDaemonSize holds the router profile of cloudboxd for mipsle to
// its budget.
func TestRouterDaemonSize(t *testing.T) {
	b, err := boards.Lookup("openwrt-mipsle")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(daemon(t, b))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("router cloudboxd for mipsle: %d bytes stripped (budget %d)", fi.Size(), sizeBudget)
	if fi.Size() > sizeBudget {
		t.Errorf("router cloudboxd for mipsle is %d bytes stripped, over the budget of %d (10 MiB) by %d: "+
			"see `go tool nm -size -sort size` of an unstripped build for what grew", fi.Size(), sizeBudget, fi.Size()-sizeBudget)
	}
}

func TestBuildRejects(t *testing.T) {
	amd64, _ := boards.Lookup("amd64")
	mipsle, _ := boards.Lookup("openwrt-mipsle")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no board", Config{OutDir: t.TempDir()}, "no board given"},
		{"image board", Config{Board: amd64, OutDir: t.TempDir()}, "not a router"},
		{"no output", Config{Board: mipsle, Binary: "/nonexistent"}, "no output directory"},
		{"bad version", Config{Board: mipsle, OutDir: t.TempDir(), Version: "1 2", Binary: "/nonexistent"}, "invalid version"},
		{"bad arch", Config{Board: mipsle, OutDir: t.TempDir(), Arch: "a/b", Binary: "/nonexistent"}, "invalid package architecture"},
		{"missing binary", Config{Board: mipsle, OutDir: t.TempDir(), Binary: "/nonexistent"}, "reading cloudboxd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestPackageVersion(t *testing.T) {
	for in, want := range map[string]string{"v0.1.0": "0.1.0", "1.2": "1.2", "dev": "0+dev", "21db501-dirty": "21db501-dirty", "": "0+"} {
		if got := PackageVersion(in); got != want {
			t.Errorf("PackageVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPackageReleaseTrust: --release-trust puts the trust file where the
// router's cloudboxd looks, as a conffile; a file that is not a trust file
// is refused before anything is written.
func TestPackageReleaseTrust(t *testing.T) {
	b := routerBoards(t)[0]
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	trust := update.Trust{Keys: []ed25519.PublicKey{pub}, Threshold: 1}.Encode()
	trustFile := filepath.Join(t.TempDir(), "trust.json")
	if err := os.WriteFile(trustFile, trust, 0o600); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	res, err := Build(context.Background(), Config{Board: b, OutDir: out, Version: "v0.1.0", SourceDateEpoch: epoch,
		Binary: daemon(t, b), ReleaseTrust: trustFile})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	run(t, out, "tar", "-xzf", res.Path)
	os.Mkdir(filepath.Join(out, "CONTROL"), 0o755)
	run(t, out, "tar", "-xzf", "control.tar.gz", "-C", "CONTROL")
	if got := run(t, out, "tar", "-xzOf", "data.tar.gz", "."+TrustPath); got != string(trust) {
		t.Errorf("%s in the package:\n%s\nwant\n%s", TrustPath, got, trust)
	}
	if conffiles, _ := os.ReadFile(filepath.Join(out, "CONTROL", "conffiles")); string(conffiles) != ConfigPath+"\n"+TrustPath+"\n" {
		t.Errorf("conffiles %q, want the UCI config and the trust file", conffiles)
	}
	if modes := run(t, out, "tar", "-tvzf", "data.tar.gz", "."+TrustPath); !strings.HasPrefix(modes, "-rw-r--r-- 0/0") {
		t.Errorf("trust file entry %q, want -rw-r--r-- 0/0", modes)
	}

	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"version": 1, "threshold": 2, "keys": []}`), 0o600)
	empty := t.TempDir()
	if _, err := Build(context.Background(), Config{Board: b, OutDir: empty, Binary: daemon(t, b), ReleaseTrust: bad}); err == nil || !strings.Contains(err.Error(), "threshold") {
		t.Errorf("Build with a bad trust file: %v, want an error about its threshold", err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("a refused build wrote %d files", len(entries))
	}
}
