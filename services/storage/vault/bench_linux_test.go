package vault

import (
	"crypto/rand"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the process's user plus system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const benchSize = 32 << 20

// reportCPU adds cpu_s_per_gb: CPU seconds (every core) per GB of file.
func reportCPU(b *testing.B, start time.Duration) {
	gb := float64(b.N) * benchSize / 1e9
	b.ReportMetric((cpuTime(b)-start).Seconds()/gb, "cpu_s_per_gb")
}

// benchManifest is a file of benchSize in the default stripes, k=3 n=5.
func benchManifest() *Manifest {
	return &Manifest{Owner: "owner", File: "file", Size: benchSize, Stripe: DefaultStripe, K: 3, N: 5}
}

// BenchmarkSealSplit is the owner's work to store a file: encryption and
// erasure coding (k=3, n=5) of every stripe.
func BenchmarkSealSplit(b *testing.B) {
	data := make([]byte, benchSize)
	rand.Read(data)
	var key [32]byte
	m := benchManifest()
	cod, err := newCoder(m, key[:])
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchSize)
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		for j := range m.stripes() {
			if _, err := cod.encode(j, data[j*m.Stripe:j*m.Stripe+m.stripePlain(j)]); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportCPU(b, start)
}

// BenchmarkRebuildOpen is a reader's work with two data shares missing:
// reconstruction and decryption of every stripe.
func BenchmarkRebuildOpen(b *testing.B) {
	data := make([]byte, benchSize)
	rand.Read(data)
	var key [32]byte
	m := benchManifest()
	cod, err := newCoder(m, key[:])
	if err != nil {
		b.Fatal(err)
	}
	stripes := make([][][]byte, m.stripes())
	for j := range stripes {
		if stripes[j], err = cod.encode(j, data[j*m.Stripe:j*m.Stripe+m.stripePlain(j)]); err != nil {
			b.Fatal(err)
		}
	}
	out := make([]byte, 0, m.Stripe+overhead)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		for j, shards := range stripes {
			in := make([][]byte, 5)
			copy(in[2:], shards[2:])
			if _, err := cod.decode(j, in, out[:0]); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportCPU(b, start)
}
