package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/image"
	"github.com/cloudbox/cloudbox/image/openwrt"
	"github.com/cloudbox/cloudbox/internal/atomicfile"
	"github.com/cloudbox/cloudbox/services/update"
)

const releaseUsage = `usage:
  cloudbox release --board B --version V --out DIR [--channel C] [--min-version V] [--spread 72h] [--downgrade] [--release-trust FILE]
  cloudbox release keygen --out KEYFILE          (prints the public key)
  cloudbox release sign --key KEYFILE DIR
  cloudbox release trust --out FILE --threshold K PUBKEY...
  cloudbox release verify --trust FILE DIR`

// runRelease builds, signs and checks releases.
func runRelease(ctx context.Context, args []string) error {
	sub := "build"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("release "+sub, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), releaseUsage); fs.PrintDefaults() }
	switch sub {
	case "build":
		board := fs.String("board", "", "board to build for (see `cloudbox boards`)")
		version := fs.String("version", "", "release version, numbers like 1.4.2")
		out := fs.String("out", "", "release directory to create")
		channel := fs.String("channel", update.DefaultChannel, "release channel")
		minVersion := fs.String("min-version", "", "oldest running version that may update to it")
		spread := fs.Duration("spread", 0, "rollout spread: boxes install at moments within it")
		downgrade := fs.Bool("downgrade", false, "allow boxes running newer versions to install it")
		trust := fs.String("release-trust", "", "release trust `FILE` the release carries (the keys boxes trust after installing it)")
		if err := parseOnly(fs, args, 0); err != nil {
			return err
		}
		b, err := boards.Lookup(*board)
		if err != nil {
			return fmt.Errorf("--board: %w", err)
		}
		var epoch int64
		if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
			if epoch, err = strconv.ParseInt(s, 10, 64); err != nil {
				return fmt.Errorf("invalid SOURCE_DATE_EPOCH %q: want Unix seconds", s)
			}
		}
		var m *update.Manifest
		if b.IsRouter() {
			// A router's release is its package's cloudboxd.
			if *trust != "" {
				return errors.New("--release-trust: a router's release carries no trust file; build the package with `cloudbox package --release-trust FILE`, or write the keys into <state>/update/trust.json of each router")
			}
			m, err = openwrt.BuildRelease(ctx, openwrt.Config{Board: b, Version: *version, SourceDateEpoch: epoch, Logger: slog.Default()},
				update.Manifest{Channel: *channel, MinVersion: *minVersion, Downgrade: *downgrade, SpreadSeconds: int64(*spread / time.Second)}, *out)
		} else {
			m, err = image.BuildRelease(ctx, image.ReleaseConfig{Board: b, Version: *version, Out: *out, Channel: *channel,
				MinVersion: *minVersion, Spread: *spread, Downgrade: *downgrade, ReleaseTrust: *trust, SourceDateEpoch: epoch, Logger: slog.Default()})
		}
		if err != nil {
			return err
		}
		fmt.Printf("release %s for %s in %s: %d artifacts, %d MiB, %d chunks; sign it with `cloudbox release sign --key K %s`\n",
			m.Version, m.Board, *out, len(m.Artifacts), m.Size()>>20, len(m.UniqueChunks()), *out)
		return nil
	case "keygen":
		out := fs.String("out", "", "private key file to create (mode 0600)")
		if err := parseOnly(fs, args, 0); err != nil {
			return err
		}
		if *out == "" {
			return errors.New("--out: name the private key file to create")
		}
		if _, err := os.Stat(*out); err == nil {
			return fmt.Errorf("%s exists: not overwriting a key", *out)
		}
		pubKey, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(*out, update.EncodePrivateKey(priv), 0o600); err != nil {
			return err
		}
		fmt.Println(update.EncodeKey(pubKey))
		return nil
	case "sign":
		key := fs.String("key", "", "private key file (from `cloudbox release keygen`)")
		if err := parseOnly(fs, args, 1); err != nil {
			return err
		}
		data, err := os.ReadFile(*key)
		if err != nil {
			return fmt.Errorf("reading the key: %w", err)
		}
		m, err := update.SignDir(fs.Arg(0), data)
		if err != nil {
			return err
		}
		_, sigs, err := update.ReadReleaseDir(fs.Arg(0))
		if err != nil {
			return err
		}
		s, err := update.ParseSignatures(sigs)
		if err != nil {
			return err
		}
		fmt.Printf("signed release %s; it has %d signatures\n", m.Version, len(s.Signatures))
		return nil
	case "trust":
		out := fs.String("out", "", "trust file to write (a box reads <state>/update/trust.json)")
		threshold := fs.Int("threshold", 1, "how many of the keys must sign a release")
		if err := fs.Parse(args); err != nil {
			return err
		}
		t := update.Trust{Threshold: *threshold}
		for _, s := range fs.Args() {
			k, err := update.ParseKey(s)
			if err != nil {
				return err
			}
			t.Keys = append(t.Keys, k)
		}
		data := t.Encode()
		if _, err := update.ParseTrust(data); err != nil {
			return err
		}
		if *out == "" {
			return errors.New("--out: name the trust file to write")
		}
		return atomicfile.Write(*out, data, 0o644)
	case "verify":
		trustFile := fs.String("trust", "", "trust file")
		if err := parseOnly(fs, args, 1); err != nil {
			return err
		}
		data, err := os.ReadFile(*trustFile)
		if err != nil {
			return fmt.Errorf("reading the trust file: %w", err)
		}
		t, err := update.ParseTrust(data)
		if err != nil {
			return err
		}
		manifest, sigs, err := update.ReadReleaseDir(fs.Arg(0))
		if err != nil {
			return err
		}
		m, err := update.Verify(t, manifest, sigs)
		if err != nil {
			return err
		}
		st, err := update.OpenStore(fs.Arg(0))
		if err != nil {
			return err
		}
		for _, a := range m.Artifacts {
			if err := st.WriteArtifact(m, a, io.Discard); err != nil {
				return err
			}
		}
		fmt.Printf("release %s for %s (%s): signatures and every chunk good\n", m.Version, m.Board, m.Channel)
		return nil
	}
	return fmt.Errorf("unknown subcommand %q\n%s", sub, releaseUsage)
}

// parseOnly parses flags and wants exactly n positional arguments.
func parseOnly(fs *flag.FlagSet, args []string, n int) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != n {
		return fmt.Errorf("want %d arguments, got %q\n%s", n, fs.Args(), releaseUsage)
	}
	return nil
}

const updateUsage = `usage:
  cloudbox update push --to BOX_URL DIR     (a release directory; admin token in $CLOUDBOX_TOKEN)
  cloudbox update pack --out FILE DIR       (one file to upload on the panel's Updates page)`

// runUpdate pushes a release into a box, which then spreads it.
func runUpdate(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "pack" {
		return runPack(args[1:])
	}
	if len(args) == 0 || args[0] != "push" {
		return fmt.Errorf("unknown subcommand\n%s", updateUsage)
	}
	fs := flag.NewFlagSet("update push", flag.ContinueOnError)
	to := fs.String("to", "", "URL of the box's panel and API, e.g. http://192.0.2.1")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("name one release directory\n%s", updateUsage)
	}
	base, err := url.Parse(strings.TrimRight(*to, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("--to %q: want a URL like http://192.0.2.1", *to)
	}
	dir := fs.Arg(0)
	if _, _, err := update.ReadReleaseDir(dir); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(update.WriteTar(pw, dir, nil)) }()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base.String()+"/api/v1/update/releases", pr)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	if tok := os.Getenv(tokenEnv); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	pr.CloseWithError(errors.New("request done"))
	if err != nil {
		return fmt.Errorf("pushing the release: %w (is cloudboxd running there?)", err)
	}
	defer resp.Body.Close()
	var res struct {
		Error    string `json:"error"`
		Version  string `json:"version"`
		Complete bool   `json:"complete"`
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("box answered HTTP %d: %.200s", resp.StatusCode, body)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("box refused the release: %s (HTTP %d)", res.Error, resp.StatusCode)
	}
	fmt.Printf("release %s is on the box (complete: %v); it spreads to the community from there\n", res.Version, res.Complete)
	return nil
}

// runPack writes a release directory as one release stream file.
func runPack(args []string) error {
	fs := flag.NewFlagSet("update pack", flag.ContinueOnError)
	out := fs.String("out", "", "file to write, e.g. release.tar")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *out == "" {
		return fmt.Errorf("name --out FILE and one release directory\n%s", updateUsage)
	}
	var buf bytes.Buffer
	if err := update.WriteTar(&buf, fs.Arg(0), nil); err != nil {
		return err
	}
	return atomicfile.Write(*out, buf.Bytes(), 0o644)
}
