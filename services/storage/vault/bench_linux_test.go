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

// BenchmarkSealSplit is the owner's work to store a file: encryption and
// erasure coding (k=3, n=5) and the shares' hashes.
func BenchmarkSealSplit(b *testing.B) {
	data := make([]byte, benchSize)
	rand.Read(data)
	var key [32]byte
	b.SetBytes(benchSize)
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		ct, err := seal(key[:], "owner", "file", data)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := split(ct, 3, 5); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// BenchmarkRebuildOpen is a reader's work with two data shares missing:
// reconstruction and decryption.
func BenchmarkRebuildOpen(b *testing.B) {
	data := make([]byte, benchSize)
	rand.Read(data)
	var key [32]byte
	ct, _ := seal(key[:], "owner", "file", data)
	shards, hashes, _ := split(ct, 3, 5)
	m := &Manifest{Size: int64(len(ct)), K: 3, N: 5, ShardSize: len(shards[0]), Hashes: hashes}
	b.SetBytes(benchSize)
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		in := make([][]byte, 5)
		copy(in[2:], shards[2:])
		got, err := rebuild(m, in, false)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := open(key[:], "owner", "file", got); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}
