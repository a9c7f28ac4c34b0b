package image

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/image/internal/ext4"
	"github.com/cloudbox/cloudbox/image/internal/fat"
	"github.com/cloudbox/cloudbox/image/internal/gobuild"
)

// DefaultSize is the image size when Config.Size is zero: it fits a 2 GB SD
// card and leaves about 780 MiB for /perm.
const DefaultSize = 2 << 30

// Config says what image to build. Zero values are documented per field.
type Config struct {
	// Board is the hardware profile; required.
	Board boards.Board
	// Out is the path of the image file to write; required. It is written
	// to a temporary file next to it and renamed into place only when
	// complete, so a failed build leaves nothing behind.
	Out string
	// Size is the disk image size in bytes; zero means DefaultSize. It is
	// rounded down to whole MiB.
	Size int64
	// Hostname is the box's initial name; zero means "cloudbox".
	Hostname string
	// Version is the cloudbox version stamped into the binaries; zero means
	// "dev".
	Version string
	// SourceDateEpoch is the time recorded in every timestamp of the image
	// (Unix seconds, as in the SOURCE_DATE_EPOCH convention); zero means
	// 1970-01-01.
	SourceDateEpoch int64
	// SourceDir is the root of the cloudbox module to build from; zero means
	// the module containing the working directory.
	SourceDir string
	// CABundle is the PEM file installed as /etc/ssl/ca-bundle.pem; zero
	// means /etc/ssl/certs/ca-certificates.crt of the build host.
	CABundle string
	// ReleaseTrust is a release trust file (`cloudbox release trust`)
	// installed as /etc/cloudbox/update-trust.json: the release keys the
	// box trusts until its state directory has its own. Zero installs none.
	ReleaseTrust string
	// GoCmd is the go command to use; zero means "go" from PATH.
	GoCmd string
	// AdminTokenFile is a file holding an API token (32+ characters)
	// installed as /etc/cloudbox/admin-token, which cloudboxd on the box
	// accepts as an administrator's (`cloudbox image --admin-token`). For
	// test images only: everyone who has the image has the token. Zero
	// installs none.
	AdminTokenFile string
	// LDFlags are extra -ldflags for the programs, after the builder's
	// own; tests build a broken cloudboxd with them (see cmd/cloudboxd's
	// failStart). Zero adds none.
	LDFlags string
	// Logger receives progress events; nil discards them.
	Logger *slog.Logger

	// goroot is the GOROOT of GoCmd, the toolchain that compiles the
	// image (its time zone database goes into the image).
	goroot string
}

func (c *Config) goCmd() string {
	if c.GoCmd == "" {
		return "go"
	}
	return c.GoCmd
}

func (c *Config) epoch() time.Time { return time.Unix(c.SourceDateEpoch, 0).UTC() }

func (c *Config) buildTimestamp() string { return c.epoch().Format(time.RFC3339) }

// Result describes a written image.
type Result struct {
	Path   string
	Size   int64
	SHA256 string // hex digest of the whole image
	// RootBytes is the size of the root squashfs in slot A.
	RootBytes int64
	// PermSize is the size of /perm in bytes.
	PermSize int64
}

// Build writes the image described by cfg. On error no file is left at
// cfg.Out (an existing file there is left untouched).
func Build(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.setDefaults(ctx); err != nil {
		return Result{}, err
	}
	log := cfg.Logger
	b := cfg.Board
	l, err := newLayout(b, cfg.Size, cfg.Hostname)
	if err != nil {
		return Result{}, err
	}

	// Create the temporary output first, so an unwritable destination fails
	// before minutes of compiling.
	dir := filepath.Dir(cfg.Out)
	f, err := os.CreateTemp(dir, "."+filepath.Base(cfg.Out)+".tmp-*")
	if err != nil {
		return Result{}, fmt.Errorf("cannot write image to %s: %w", cfg.Out, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Truncate(cfg.Size); err != nil {
		return Result{}, fmt.Errorf("sizing %s: %w", cfg.Out, err)
	}

	work, err := os.MkdirTemp("", "cloudbox-image-")
	if err != nil {
		return Result{}, fmt.Errorf("creating work directory: %w", err)
	}
	defer os.RemoveAll(work)

	start := time.Now()
	binDir := filepath.Join(work, "bin")
	if err := buildPrograms(ctx, &cfg, b, binDir); err != nil {
		return Result{}, err
	}
	log.Info("compiled programs", "board", b.Name, "goarch", b.GOARCH, "took", time.Since(start).Round(time.Millisecond))

	kernelDir, err := moduleDir(ctx, &cfg, b.KernelModule)
	if err != nil {
		return Result{}, err
	}
	var firmwareDir string
	if b.FirmwareModule != "" {
		if firmwareDir, err = moduleDir(ctx, &cfg, b.FirmwareModule); err != nil {
			return Result{}, err
		}
	}

	bootFiles, err := bootFiles(b, l, kernelDir, firmwareDir)
	if err != nil {
		return Result{}, err
	}
	boot := l.Parts[partBoot-1]
	if err := fat.Write(f, boot.Offset(), boot.Size(), bootFiles, fat.Options{
		ModTime:  cfg.epoch(),
		Label:    "CLOUDBOX",
		VolumeID: l.DiskID,
	}); err != nil {
		return Result{}, fmt.Errorf("writing boot partition: %w", err)
	}

	rootA := l.Parts[partRootA-1]
	rootBytes, err := writeRoot(&cfg, f, rootA, binDir, kernelDir)
	if err != nil {
		return Result{}, err
	}

	perm := l.Parts[partPerm-1]
	seed := sha256.Sum256([]byte(fmt.Sprintf("cloudbox perm\x00%s\x00%08x", cfg.Hostname, l.DiskID)))
	var fsUUID, hashSeed [16]byte
	copy(fsUUID[:], seed[:16])
	copy(hashSeed[:], seed[16:])
	fsUUID[6] = fsUUID[6]&0x0f | 0x40 // RFC 4122 version 4 layout, deterministic content
	fsUUID[8] = fsUUID[8]&0x3f | 0x80
	if err := ext4.Format(f, perm.Offset(), perm.Size(), ext4.Options{
		UUID: fsUUID, HashSeed: hashSeed, Time: cfg.epoch(), Label: "perm",
	}); err != nil {
		return Result{}, fmt.Errorf("formatting /perm: %w", err)
	}

	if err := writePartitionTable(f, l, b.HybridMBR); err != nil {
		return Result{}, err
	}

	sum, err := fileSHA256(f)
	if err != nil {
		return Result{}, err
	}
	if err := f.Sync(); err != nil {
		return Result{}, fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return Result{}, fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return Result{}, fmt.Errorf("setting mode of %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, cfg.Out); err != nil {
		return Result{}, fmt.Errorf("moving image into place: %w", err)
	}
	done = true
	log.Info("image written", "path", cfg.Out, "board", b.Name, "size", cfg.Size, "took", time.Since(start).Round(time.Millisecond))
	return Result{Path: cfg.Out, Size: cfg.Size, SHA256: sum, RootBytes: rootBytes, PermSize: perm.Size()}, nil
}

func (c *Config) setDefaults(ctx context.Context) error {
	if c.Board.Name == "" {
		return errors.New("no board given: pass --board (see `cloudbox boards`)")
	}
	if c.Board.IsRouter() {
		return fmt.Errorf("board %s is a router: it gets a package, not an image; use `cloudbox package --board %s`", c.Board.Name, c.Board.Name)
	}
	if c.Out == "" {
		return errors.New("no output file given: pass --out FILE")
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	c.Size = c.Size / boards.MiB * boards.MiB
	if c.Hostname == "" {
		c.Hostname = "cloudbox"
	}
	if err := validHostname(c.Hostname); err != nil {
		return err
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if strings.ContainsAny(c.Version, " \t\n'\"") {
		return fmt.Errorf("invalid version %q: no spaces or quotes", c.Version)
	}
	if c.CABundle == "" {
		c.CABundle = "/etc/ssl/certs/ca-certificates.crt"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.SourceDir == "" {
		dir, err := gobuild.SourceDir(ctx, c.GoCmd)
		if err != nil {
			return err
		}
		c.SourceDir = dir
	}
	goroot, err := gobuild.EnvVar(ctx, c.GoCmd, c.SourceDir, "GOROOT")
	if err != nil {
		return fmt.Errorf("locating the Go toolchain: %w", err)
	}
	c.goroot = goroot
	return nil
}

// validHostname accepts RFC 1123 labels: the name is also the mDNS name.
func validHostname(h string) error {
	if len(h) > 63 {
		return fmt.Errorf("invalid hostname %q: longer than 63 characters", h)
	}
	for i, r := range h {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(h)-1
		if !ok {
			return fmt.Errorf("invalid hostname %q: use lowercase letters, digits and inner hyphens", h)
		}
	}
	return nil
}

func fileSHA256(f *os.File) (string, error) {
	h := sha256.New()
	if _, err := f.Seek(0, 0); err != nil {
		return "", fmt.Errorf("hashing image: %w", err)
	}
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing image: %w", err)
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ParseSize parses a disk size such as "2G", "1500M", "2GiB" or a plain
// number of bytes. Units are powers of 1024.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "IB"), "B")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v <= 0 || v > (1<<50)/mult {
		return 0, fmt.Errorf("invalid size %q: use a number with an optional unit, like 2G or 1500M", s)
	}
	return v * mult, nil
}
