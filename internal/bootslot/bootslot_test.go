package bootslot

import (
	"testing"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Config
		bad      bool
	}{
		{"empty", "", Config{}, false},
		{"prefix", "arm_64bit=1\n[all]\nos_prefix=b/\n", Config{Prefix: "b/"}, false},
		{"later wins", "os_prefix=a/\nos_prefix=b/\ncmdline=cmdline-trial.txt\n", Config{Prefix: "b/", Cmdline: "cmdline-trial.txt"}, false},
		{"comment", "# os_prefix=b/\nos_prefix = a/\n", Config{Prefix: "a/"}, false},
		{"dotdot", "os_prefix=../\n", Config{}, true},
		{"absolute", "cmdline=/etc/x\n", Config{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(tc.in))
			if (err != nil) != tc.bad {
				t.Fatalf("ParseConfig error %v, want error %v", err, tc.bad)
			}
			if got != tc.want {
				t.Errorf("ParseConfig = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSetPrefixAndTry(t *testing.T) {
	base := []byte("enable_uart=1\n[all]\nos_prefix=a/\n")
	c := SetPrefix(base, "b/")
	got, err := ParseConfig(c)
	if err != nil || got != (Config{Prefix: "b/"}) {
		t.Fatalf("SetPrefix gave %q parsed as %+v, %v", c, got, err)
	}
	if string(SetPrefix(c, "b/")) != string(c) {
		t.Errorf("SetPrefix is not idempotent:\n%s\n---\n%s", c, SetPrefix(c, "b/"))
	}
	try, err := ParseConfig(TryConfig(c, "a/"))
	if err != nil || try.Part() != PartA || try.CmdlinePath() != "a/cmdline-trial.txt" {
		t.Errorf("TryConfig parsed as %+v (%v), want slot A with the trial command line", try, err)
	}
	if got, _ := ParseConfig(SetPrefix(TryConfig(c, "a/"), "a/")); got.Cmdline != "" {
		t.Errorf("SetPrefix kept the trial command line: %+v", got)
	}
}

func TestCmdline(t *testing.T) {
	in := "console=ttyS0 root=PARTUUID=c1b0c1b0-0000-4000-8000-1234567800001/PARTNROFF=1 init=/gokrazy/init rootwait    "
	out, err := SetRoot(in, PartB)
	if err != nil {
		t.Fatal(err)
	}
	want := "console=ttyS0 root=PARTUUID=c1b0c1b0-0000-4000-8000-1234567800001/PARTNROFF=2 init=/gokrazy/init rootwait"
	if out != want {
		t.Errorf("SetRoot = %q, want %q", out, want)
	}
	if _, err := SetRoot("root=/dev/sda2", PartB); err == nil {
		t.Error("SetRoot accepted a root= it cannot rewrite")
	}
	trial := TrialCmdline(TrialCmdline(out, 60), 90)
	if TrialSeconds(trial) != 90 || TrialSeconds(out) != 0 {
		t.Errorf("TrialSeconds(%q) = %d, want 90", trial, TrialSeconds(trial))
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("os_prefix=a/\ncmdline=cmdline-trial.txt\n"))
	f.Add([]byte("[pi4]\narm_64bit=1\n[all]\nos_prefix=b/"))
	f.Add([]byte("os_prefix=../x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		for _, v := range []string{c.Prefix, c.Cmdline} {
			if len(v) > 0 && v[0] == '/' {
				t.Fatalf("accepted absolute %q", v)
			}
		}
		again, err := ParseConfig(SetPrefix(data, "a/"))
		if err != nil || again.Prefix != "a/" || again.Cmdline != "" {
			t.Fatalf("SetPrefix(%q) parsed as %+v, %v", data, again, err)
		}
	})
}
