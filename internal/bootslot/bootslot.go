package bootslot

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// Files of the boot partition's root directory.
const (
	// ConfigFile selects the committed slot (os_prefix=).
	ConfigFile = "config.txt"
	// TryFile selects the slot under trial for one boot.
	TryFile = "tryboot.txt"
	// TryFlagFile is the emulation of the Pi firmware's one-shot tryboot
	// flag: the qemu launcher honours a new content of it once (as the
	// firmware honours the mailbox flag once) and then ignores it until
	// it changes. Boxes write it before a trial reboot and remove it when
	// the trial ends.
	TryFlagFile = "tryboot.flg"
	// CmdlineFile is each slot's kernel command line, under its prefix.
	CmdlineFile = "cmdline.txt"
	// TrialCmdlineFile is the slot's command line for a trial boot, under
	// its prefix: CmdlineFile plus TrialArg.
	TrialCmdlineFile = "cmdline-trial.txt"
	// Kernel is the kernel's file name, under the slot's prefix.
	Kernel = "vmlinuz"
)

// TrialArg is the kernel argument of a trial boot; its value is the number
// of seconds the new system has to commit before init resets the box.
const TrialArg = "cloudbox.trial"

// Root partition numbers of the two slots.
const (
	PartA = 2
	PartB = 3
)

// Prefix returns the os_prefix of the slot on root partition part ("a/" or
// "b/"), or "" for a partition that is no slot.
func Prefix(part int) string {
	switch part {
	case PartA:
		return "a/"
	case PartB:
		return "b/"
	}
	return ""
}

// PartOf returns the root partition of os_prefix prefix, or 0.
func PartOf(prefix string) int {
	switch prefix {
	case "a/":
		return PartA
	case "b/":
		return PartB
	}
	return 0
}

// Other returns the other slot's partition.
func Other(part int) int {
	if part == PartA {
		return PartB
	}
	return PartA
}

// Config is what the firmware takes from config.txt or tryboot.txt.
type Config struct {
	// Prefix is os_prefix; "" when the file has none (files at the root).
	Prefix string
	// Cmdline is the command line file under Prefix; "" means
	// CmdlineFile.
	Cmdline string
}

// maxConfig bounds the config file parsed.
const maxConfig = 64 << 10

// ParseConfig reads the os_prefix and cmdline settings of a Pi firmware
// config file. Later settings override earlier ones; conditional sections
// ("[pi4]", "[all]") are not evaluated, so the slot settings belong in the
// last section. Values must be relative names without "..".
func ParseConfig(data []byte) (Config, error) {
	if len(data) > maxConfig {
		return Config{}, fmt.Errorf("config file is %d bytes, more than %d", len(data), maxConfig)
	}
	var c Config
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 0, 4096), maxConfig)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch key {
		case "os_prefix", "cmdline":
		default:
			continue
		}
		if strings.Contains(val, "..") || strings.HasPrefix(val, "/") || strings.ContainsAny(val, "\\\x00") {
			return Config{}, fmt.Errorf("line %d: %s=%q is not a relative name", n, key, val)
		}
		if key == "os_prefix" {
			c.Prefix = val
		} else {
			c.Cmdline = val
		}
	}
	if err := sc.Err(); err != nil {
		return Config{}, fmt.Errorf("reading config file: %w", err)
	}
	return c, nil
}

// CmdlinePath returns the command line file's path on the boot partition.
func (c Config) CmdlinePath() string {
	if c.Cmdline == "" {
		return c.Prefix + CmdlineFile
	}
	return c.Prefix + c.Cmdline
}

// Part returns the slot's root partition, 0 for a prefix that is no slot.
func (c Config) Part() int { return PartOf(c.Prefix) }

// SetPrefix returns config file data with its os_prefix set to prefix and
// any cmdline setting removed: every other line is kept, the setting goes
// at the end under an [all] section.
func SetPrefix(data []byte, prefix string) []byte {
	var b strings.Builder
	for line := range strings.Lines(string(data)) {
		t := strings.TrimSpace(line)
		key, _, _ := strings.Cut(t, "=")
		if k := strings.TrimSpace(key); k == "os_prefix" || k == "cmdline" || t == "# cloudbox slot" {
			continue
		}
		b.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			b.WriteString("\n")
		}
	}
	s := strings.TrimRight(b.String(), "\n")
	for strings.HasSuffix(s, "[all]") {
		s = strings.TrimRight(strings.TrimSuffix(s, "[all]"), "\n")
	}
	if s != "" {
		s += "\n\n"
	}
	s += "[all]\n# cloudbox slot\nos_prefix=" + prefix + "\n"
	return []byte(s)
}

// TryConfig returns tryboot.txt for a trial of the slot with os_prefix
// prefix: the config file data with the prefix and the trial command line.
func TryConfig(data []byte, prefix string) []byte {
	return append(SetPrefix(data, prefix), "cmdline="+TrialCmdlineFile+"\n"...)
}

// SetRoot returns the command line cmdline with its root= argument naming
// root partition part instead, in the form
// root=PARTUUID=<boot partition>/PARTNROFF=<part-1> the images use.
func SetRoot(cmdline string, part int) (string, error) {
	fields := strings.Fields(cmdline)
	found := false
	for i, f := range fields {
		v, ok := strings.CutPrefix(f, "root=")
		if !ok {
			continue
		}
		base, _, ok := strings.Cut(v, "/PARTNROFF=")
		if !ok {
			return "", fmt.Errorf("root=%s does not name the partition by offset from the boot partition", v)
		}
		fields[i] = "root=" + base + "/PARTNROFF=" + strconv.Itoa(part-1)
		found = true
	}
	if !found {
		return "", fmt.Errorf("command line has no root= argument")
	}
	return strings.Join(fields, " "), nil
}

// TrialCmdline returns cmdline with the trial argument: the new system has
// seconds to commit.
func TrialCmdline(cmdline string, seconds int) string {
	var out []string
	for _, f := range strings.Fields(cmdline) {
		if !strings.HasPrefix(f, TrialArg+"=") {
			out = append(out, f)
		}
	}
	return strings.Join(append(out, TrialArg+"="+strconv.Itoa(seconds)), " ")
}

// CommittedMarker is created by cloudboxd when a trial boot has committed;
// until it exists, init resets a trial boot after its TrialArg seconds.
// /run is a tmpfs, so the marker lasts one boot.
const CommittedMarker = "/run/cloudbox-committed"

// TrialSeconds returns the trial argument of a kernel command line, 0 when
// it has none.
func TrialSeconds(cmdline string) int {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, TrialArg+"="); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return n
			}
		}
	}
	return 0
}
