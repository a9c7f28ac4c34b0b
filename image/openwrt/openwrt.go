package openwrt

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/image/internal/gobuild"
	"github.com/cloudbox/cloudbox/services/update"
)

// Package is the name of the package on the router.
const Package = "cloudbox"

// Paths of the package's files on the router.
const (
	BinaryPath      = "/usr/sbin/cloudboxd"
	InitPath        = "/etc/init.d/cloudbox"
	ConfigPath      = "/etc/config/cloudbox"
	UCIDefaultsPath = "/etc/uci-defaults/90-cloudbox"
	KeepPath        = "/lib/upgrade/keep.d/cloudbox"
	// TrustPath is where Config.ReleaseTrust goes: the file cloudboxd
	// reads when its state has no update/trust.json (appliance.ImageTrustFile).
	TrustPath = "/etc/cloudbox/update-trust.json"
	// StateDir is the default state directory (UCI option state_dir).
	StateDir = "/etc/cloudbox"
)

var (
	//go:embed files/cloudbox.init
	initScript []byte
	//go:embed files/cloudbox.config
	uciConfig []byte
	//go:embed files/uci-defaults
	uciDefaults []byte
	//go:embed files/postinst
	postinst []byte
	//go:embed files/prerm
	prerm []byte
	//go:embed files/sysupgrade.keep
	sysupgradeKeep []byte
)

// Config says what package to build. Zero values are documented per field.
type Config struct {
	// Board is a router board (boards.Board.IsRouter); required.
	Board boards.Board
	// OutDir is the directory the package is written to, as
	// cloudbox_<version>_<arch>.ipk; required, created if missing.
	OutDir string
	// Version is the cloudbox version stamped into cloudboxd and, as
	// PackageVersion(Version), into the package; zero means "dev".
	Version string
	// Arch overrides the package architecture of the board (opkg accepts
	// a package only for the architectures `opkg print-architecture`
	// lists, e.g. "arm_cortex-a9_vfpv3-d16" for mvebu); zero means
	// Board.PackageArch.
	Arch string
	// SourceDateEpoch is every timestamp in the package (Unix seconds);
	// zero means 1970-01-01.
	SourceDateEpoch int64
	// Binary is a cloudboxd already built for the board with BuildDaemon;
	// zero means Build compiles one.
	Binary string
	// SourceDir is the root of the cloudbox module; zero means the module
	// containing the working directory.
	SourceDir string
	// GoCmd is the go command; zero means "go" from PATH.
	GoCmd string
	// ReleaseTrust is a release trust file (`cloudbox release trust`)
	// installed as TrustPath, a conffile: the release keys the router's
	// update agent trusts until its state holds update/trust.json. Zero
	// means none (no release is accepted until keys are written there).
	ReleaseTrust string
	// Logger receives progress events; nil discards them.
	Logger *slog.Logger
}

// Result describes a written package.
type Result struct {
	Path   string
	Size   int64  // bytes of the .ipk
	SHA256 string // hex digest of the .ipk
	// BinarySize is the size of the stripped cloudboxd in the package.
	BinarySize int64
	// InstalledSize is the Installed-Size of the control file: the size
	// of the uncompressed data archive, as ipkg-build computes it.
	InstalledSize int64
}

// DaemonBuildArgs are the `go build` arguments (without -o and the
// package) of the router profile of cloudboxd for board b: the board's
// tags plus nethttpomithttp2 (no HTTP/2 in net/http), stripped, no build
// ID, no inlining except on the packet path (x/crypto, wireguard-go,
// overlay), which keeps it fast where it matters.
func DaemonBuildArgs(b boards.Board, version string) []string {
	tags := append(append([]string(nil), b.Tags...), "nethttpomithttp2", "netgo", "osusergo")
	parts := []string{
		"-s", "-w", "-buildid=",
		"-X", "github.com/cloudbox/cloudbox/internal/buildinfo.Version=" + version,
		"-X", "github.com/cloudbox/cloudbox/internal/buildinfo.Board=" + b.Name,
	}
	if b.GOARCH == "mips" || b.GOARCH == "mipsle" {
		// Segments aligned to 16 KiB instead of Go's 64 KiB for MIPS:
		// OpenWrt's MIPS kernels use 4 KiB pages (16 KiB covers 16 KiB-page
		// kernels too), and the padding between the three segments cost
		// up to ~190 KB of a router's flash.
		parts = append(parts, "-R", "0x4000")
	}
	ldflags := strings.Join(parts, " ")
	return []string{"-trimpath", "-tags", strings.Join(tags, ","), "-ldflags", ldflags,
		"-gcflags=all=-l",
		"-gcflags=golang.org/x/crypto/...=",
		"-gcflags=golang.zx2c4.com/wireguard/...=",
		"-gcflags=github.com/cloudbox/cloudbox/overlay/...=",
	}
}

// BuildDaemon compiles the router profile of cloudboxd for cfg.Board to
// the file out.
func BuildDaemon(ctx context.Context, cfg Config, out string) error {
	cfg.Binary = ""
	if err := cfg.setDefaults(ctx); err != nil {
		return err
	}
	args := append(DaemonBuildArgs(cfg.Board, cfg.Version), "-o", out, "./cmd/cloudboxd")
	if err := gobuild.Build(ctx, cfg.GoCmd, cfg.SourceDir, cfg.Board, args...); err != nil {
		return fmt.Errorf("compiling cloudboxd: %w", err)
	}
	return nil
}

// Build writes the package for cfg.Board into cfg.OutDir, compiling
// cloudboxd unless cfg.Binary names one. The package appears only when
// complete.
func Build(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.setDefaults(ctx); err != nil {
		return Result{}, err
	}
	if cfg.OutDir == "" {
		return Result{}, errors.New("no output directory given: pass --out DIR")
	}
	start := time.Now()
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return Result{}, fmt.Errorf("creating output directory: %w", err)
	}
	bin := cfg.Binary
	if bin == "" {
		work, err := os.MkdirTemp("", "cloudbox-package-")
		if err != nil {
			return Result{}, fmt.Errorf("creating work directory: %w", err)
		}
		defer os.RemoveAll(work)
		bin = filepath.Join(work, "cloudboxd")
		if err := BuildDaemon(ctx, cfg, bin); err != nil {
			return Result{}, err
		}
		cfg.Logger.Info("compiled cloudboxd", "board", cfg.Board.Name, "took", time.Since(start).Round(time.Millisecond))
	}
	daemon, err := os.ReadFile(bin)
	if err != nil {
		return Result{}, fmt.Errorf("reading cloudboxd: %w", err)
	}

	files := []file{
		{path: BinaryPath, mode: 0o755, data: daemon},
		{path: ConfigPath, mode: 0o600, data: uciConfig},
		{path: InitPath, mode: 0o755, data: initScript},
		{path: UCIDefaultsPath, mode: 0o755, data: uciDefaults},
		{path: KeepPath, mode: 0o644, data: sysupgradeKeep},
	}
	conffiles := ConfigPath + "\n"
	if cfg.ReleaseTrust != "" {
		trust, err := update.ReadTrustFile(cfg.ReleaseTrust)
		if err != nil {
			return Result{}, err
		}
		files = append(files, file{path: TrustPath, mode: 0o644, data: trust})
		conffiles += TrustPath + "\n"
	}
	mtime := time.Unix(cfg.SourceDateEpoch, 0)
	data, dataTarSize, err := tarGz(files, mtime)
	if err != nil {
		return Result{}, fmt.Errorf("writing data.tar.gz: %w", err)
	}
	version := PackageVersion(cfg.Version)
	control, _, err := tarGz([]file{
		{path: "/control", mode: 0o644, data: controlFile(cfg, version, dataTarSize)},
		{path: "/conffiles", mode: 0o644, data: []byte(conffiles)},
		{path: "/postinst", mode: 0o755, data: postinst},
		{path: "/prerm", mode: 0o755, data: prerm},
	}, mtime)
	if err != nil {
		return Result{}, fmt.Errorf("writing control.tar.gz: %w", err)
	}
	ipk, err := outerArchive(data, control, mtime)
	if err != nil {
		return Result{}, fmt.Errorf("writing the package archive: %w", err)
	}

	name := fmt.Sprintf("%s_%s_%s.ipk", Package, version, cfg.Arch)
	path := filepath.Join(cfg.OutDir, name)
	if err := writeFileAtomic(path, ipk); err != nil {
		return Result{}, err
	}
	sum := sha256.Sum256(ipk)
	cfg.Logger.Info("package written", "path", path, "board", cfg.Board.Name, "size", len(ipk), "took", time.Since(start).Round(time.Millisecond))
	return Result{Path: path, Size: int64(len(ipk)), SHA256: hex.EncodeToString(sum[:]),
		BinarySize: int64(len(daemon)), InstalledSize: dataTarSize}, nil
}

// controlFile is the package's control file (opkg's fields, as OpenWrt's
// build system writes them).
func controlFile(cfg Config, version string, installedSize int64) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Package: %s\n", Package)
	fmt.Fprintf(&b, "Version: %s\n", version)
	// cloudboxd is static: it needs no libc, only the TUN driver.
	fmt.Fprintf(&b, "Depends: kmod-tun\n")
	fmt.Fprintf(&b, "Source: github.com/cloudbox/cloudbox\n")
	fmt.Fprintf(&b, "SourceDateEpoch: %d\n", cfg.SourceDateEpoch)
	fmt.Fprintf(&b, "Section: net\n")
	fmt.Fprintf(&b, "Architecture: %s\n", cfg.Arch)
	fmt.Fprintf(&b, "Installed-Size: %d\n", installedSize)
	fmt.Fprintf(&b, "Description: community cloud in a box (router profile of cloudboxd for %s):\n", cfg.Board.Name)
	fmt.Fprintf(&b, " an encrypted mesh between the boxes of a community network, its service\n")
	fmt.Fprintf(&b, " catalog, DNS and mDNS on the LAN. Configured in %s.\n", ConfigPath)
	return b.Bytes()
}

// PackageVersion turns a cloudbox version into an opkg version: without a
// leading "v", and prefixed with "0+" when it does not start with a digit
// (a commit hash from git describe, "dev"), so it sorts below releases.
func PackageVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	if v == "" || v[0] < '0' || v[0] > '9' {
		v = "0+" + v
	}
	return v
}

func (c *Config) setDefaults(ctx context.Context) error {
	if c.Board.Name == "" {
		return errors.New("no board given: pass --board (see `cloudbox boards`)")
	}
	if !c.Board.IsRouter() {
		return fmt.Errorf("board %s is not a router: it gets an image; use `cloudbox image --board %s`", c.Board.Name, c.Board.Name)
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if strings.ContainsAny(c.Version, " \t\n'\"_/") {
		return fmt.Errorf("invalid version %q: no spaces, quotes, underscores or slashes", c.Version)
	}
	if c.Arch == "" {
		c.Arch = c.Board.PackageArch
	}
	if strings.ContainsAny(c.Arch, " \t\n/") {
		return fmt.Errorf("invalid package architecture %q", c.Arch)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.SourceDir == "" && c.Binary == "" {
		dir, err := gobuild.SourceDir(ctx, c.GoCmd)
		if err != nil {
			return err
		}
		c.SourceDir = dir
	}
	return nil
}
