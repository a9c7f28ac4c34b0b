// Command updatebench measures updates over the mesh in host mode (`make
// bench-update`): the time and bytes to spread one release injected at one
// box to N boxes, the busiest box's upload as a multiple of the release, and
// the bytes an update moves when only cloudboxd changes (two real releases
// built with image.BuildRelease, whose cloudboxd differs by its version
// stamp). The agents run in this process, each serving on loopback HTTP.
package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/image"
	"github.com/cloudbox/cloudbox/services/update"
	"github.com/cloudbox/cloudbox/services/update/updatetest"
)

func main() {
	sizes := flag.String("n", "5,20,50", "comma-separated numbers of boxes")
	mib := flag.Int("size", 32, "size of the synthetic release in MiB")
	deltaBoxes := flag.Int("delta-boxes", 5, "boxes for the cloudboxd-only update (0: skip it)")
	board := flag.String("board", "amd64", "board of the real releases")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *sizes, *mib, *deltaBoxes, *board); err != nil {
		fmt.Fprintln(os.Stderr, "updatebench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, sizes string, mib, deltaBoxes int, board string) error {
	work, err := os.MkdirTemp("", "updatebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	_, key, _ := ed25519.GenerateKey(nil)
	trust := update.Trust{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, Threshold: 1}

	// A synthetic release of random bytes: nothing to reuse.
	synth := filepath.Join(work, "synthetic")
	root := make([]byte, mib<<20)
	rand.NewChaCha8([32]byte{1}).Read(root)
	if _, err := update.WriteRelease(synth, update.Manifest{Board: board, Channel: update.DefaultChannel, Version: "2.0.0"},
		[]update.Input{{Name: update.RootArtifact, Data: root}}); err != nil {
		return err
	}
	if _, err := update.SignDir(synth, update.EncodePrivateKey(key)); err != nil {
		return err
	}
	size := int64(len(root))
	fmt.Printf("%-6s %-9s %-12s %-14s %-12s\n", "boxes", "seconds", "moved_MiB", "max_upload_x", "inject_up_x")
	var last struct {
		n       int
		seconds float64
		ratio   float64
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			return fmt.Errorf("-n: %q is not a number of boxes (2 or more)", s)
		}
		secs, up, down, err := spread(ctx, filepath.Join(work, "n"+s), n, trust, []string{synth})
		if err != nil {
			return err
		}
		var moved int64
		for _, d := range down {
			moved += d
		}
		ratio := float64(slices.Max(up)) / float64(size)
		fmt.Printf("%-6d %-9.2f %-12.1f %-14.2f %-12.2f\n", n, secs, float64(moved)/(1<<20), ratio, float64(up[0])/float64(size))
		last.n, last.seconds, last.ratio = n, secs, ratio
	}

	delta := int64(-1)
	if deltaBoxes > 0 {
		b, err := boards.Lookup(board)
		if err != nil {
			return err
		}
		var dirs []string
		for _, v := range []string{"1.0.0", "1.0.1"} {
			dir := filepath.Join(work, "release-"+v)
			fmt.Fprintf(os.Stderr, "building release %s for %s\n", v, board)
			if _, err := image.BuildRelease(ctx, image.ReleaseConfig{Board: b, Version: v, Out: dir, SourceDateEpoch: 1700000000}); err != nil {
				return err
			}
			if _, err := update.SignDir(dir, update.EncodePrivateKey(key)); err != nil {
				return err
			}
			dirs = append(dirs, dir)
		}
		_, _, down, err := spread(ctx, filepath.Join(work, "delta"), deltaBoxes, trust, dirs)
		if err != nil {
			return err
		}
		delta = slices.Max(down)
		m, _, _ := update.ReadReleaseDir(dirs[1])
		man, _ := update.ParseManifest(m)
		fmt.Printf("cloudboxd-only update 1.0.0 -> 1.0.1 (release %.1f MiB): at most %.2f MiB moved to a box\n",
			float64(man.Size())/(1<<20), float64(delta)/(1<<20))
	}
	fmt.Printf("RESULT update n=%d seconds=%.2f max_upload_ratio=%.2f delta_bytes=%d\n", last.n, last.seconds, last.ratio, delta)
	return nil
}

// spread runs n agents, injects each release of dirs in turn at box 0 and
// waits until all hold it. It returns the seconds the last release took
// and the bytes each box uploaded and downloaded for it.
func spread(ctx context.Context, dir string, n int, trust update.Trust, dirs []string) (float64, []int64, []int64, error) {
	net := updatetest.New(dir)
	defer net.Close()
	for range n {
		if _, err := net.Add(update.Config{Trust: trust}); err != nil {
			return 0, nil, nil, err
		}
	}
	var secs float64
	var up0, down0 []int64
	for _, d := range dirs {
		up0, down0 = net.Traffic()
		m, _, err := update.ReadReleaseDir(d)
		if err != nil {
			return 0, nil, nil, err
		}
		man, err := update.ParseManifest(m)
		if err != nil {
			return 0, nil, nil, err
		}
		start := time.Now()
		if err := net.Inject(net.Nodes()[0], d); err != nil {
			return 0, nil, nil, err
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		err = net.WaitComplete(wctx, man.Version)
		cancel()
		if err != nil {
			return 0, nil, nil, err
		}
		secs = time.Since(start).Seconds()
	}
	up, down := net.Traffic()
	for i := range up {
		up[i] -= up0[i]
		down[i] -= down0[i]
	}
	return secs, up, down, nil
}
