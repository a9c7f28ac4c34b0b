package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudbox/cloudbox/internal/testenv"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cloudbox-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "cloudbox")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestBoards(t *testing.T) {
	out, err := exec.Command(bin, "boards").Output()
	if err != nil {
		t.Fatalf("cloudbox boards: %v", err)
	}
	for _, want := range []string{"rpi", "arm64", "amd64", "Raspberry Pi", "openwrt-mipsle", "openwrt-mips", "openwrt-armv7", "openwrt-aarch64", "package (mipsel_24kc)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("cloudbox boards output lacks %q:\n%s", want, out)
		}
	}
}

// TestImageBadInput checks that bad input gets a one-line error, exit
// status 1 and no file left behind.
func TestImageBadInput(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "plainfile")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "box.img")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown board", []string{"--board", "pdp11", "--out", out}, `unknown board "pdp11"`},
		{"no board", []string{"--out", out}, "no board given"},
		{"size too small", []string{"--board", "amd64", "--out", out, "--size", "1G"}, "too small"},
		{"bad size", []string{"--board", "amd64", "--out", out, "--size", "big"}, "invalid size"},
		{"unwritable output", []string{"--board", "amd64", "--out", filepath.Join(notDir, "box.img")}, "cannot write image"},
		{"router board", []string{"--board", "openwrt-mipsle", "--out", out}, "use `cloudbox package --board openwrt-mipsle`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"image"}, tc.args...)...)
			cmd.Dir = testenv.ModuleRoot(t)
			stderr, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1; output:\n%s", err, stderr)
			}
			msg := strings.TrimSpace(string(stderr))
			if !strings.Contains(msg, tc.want) || strings.Count(msg, "\n") != 0 {
				t.Errorf("error output %q: want one line containing %q", msg, tc.want)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Name() != "plainfile" {
					t.Errorf("left %s behind", e.Name())
				}
			}
		})
	}
}

func TestVMNeedsImage(t *testing.T) {
	out, err := exec.Command(bin, "vm").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no image given") {
		t.Errorf("cloudbox vm without --image: err %v, output %q", err, out)
	}
}

func TestCommunityAndInvite(t *testing.T) {
	founder := filepath.Join(t.TempDir(), "founder")
	run := func(args ...string) (string, error) {
		out, err := exec.Command(bin, args...).CombinedOutput()
		return string(out), err
	}
	if out, err := run("community", "init", "--state-dir", founder, "--name", "testnet", "--range", "198.18.0.0/15"); err != nil || !strings.Contains(out, "198.18.0.1") {
		t.Fatalf("community init: %v\n%s", err, out)
	}
	if out, err := run("community", "init", "--state-dir", founder, "--name", "again"); err == nil || !strings.Contains(out, "already a member") {
		t.Errorf("second community init: %v\n%s", err, out)
	}
	out, err := run("invite", "--state-dir", founder, "--name", "box2", "--bootstrap", "192.0.2.1:51820")
	if err != nil || !strings.HasPrefix(out, "cloudbox-invite:") {
		t.Fatalf("invite: %v\n%s", err, out)
	}
	member := filepath.Join(t.TempDir(), "member")
	if out, err := run("invite", "--state-dir", member, "--bootstrap", "192.0.2.1:51820"); err == nil || !strings.Contains(out, "cloudbox invite:") {
		t.Errorf("invite from a box outside any community: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"community", "init", "--state-dir", member},
		{"community", "init", "--state-dir", member, "--name", "x", "--range", "2001:db8::/64"},
		{"invite", "--state-dir", founder},
		{"invite", "--state-dir", founder, "--bootstrap", "not-an-endpoint"},
	} {
		if out, err := run(args...); err == nil || !strings.Contains(out, "cloudbox ") {
			t.Errorf("cloudbox %v: %v, want an error naming the command\n%s", args, err, out)
		}
	}
}
