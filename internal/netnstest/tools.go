package netnstest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/testenv"
)

// WaitFor polls cond every 100 ms until it returns "" or timeout passes;
// then it fails the test with cond's last complaint. It returns how long it
// waited.
func WaitFor(t testing.TB, timeout time.Duration, cond func() string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		why := cond()
		if why == "" {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("after %v: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Buffer is a bytes.Buffer that a command may write while the test reads
// it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Iperf3 runs a TCP test of secs seconds from client to addr, where server
// runs a one-shot iperf3 server, and returns the throughput received in
// Mbit/s. It fails the test when no data arrives.
func Iperf3(t testing.TB, server, client *NS, addr string, secs int) float64 {
	t.Helper()
	testenv.RequireCommand(t, "iperf3", "iperf3")
	testenv.RequireCommand(t, "ss", "iproute2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+60)*time.Second)
	defer cancel()
	srv := server.Command(ctx, "iperf3", "-s", "-1", "-B", addr, "-p", "5201")
	var srvOut Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Wait() }()
	defer func() {
		srv.Process.Kill()
		<-srvDone
	}()
	WaitFor(t, 10*time.Second, func() string {
		out, err := server.Try("ss", "-Hltn", "sport", "=", ":5201")
		if err != nil || !strings.Contains(out, "5201") {
			return fmt.Sprintf("iperf3 server does not listen: %v %s\n%s", err, out, srvOut.String())
		}
		return ""
	})
	out, err := client.Try("iperf3", "-c", addr, "-p", "5201", "-t", strconv.Itoa(secs), "-J", "--connect-timeout", "5000")
	if err != nil {
		t.Fatalf("iperf3 to %s: %v\n%s\nserver:\n%s", addr, err, out, srvOut.String())
	}
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("iperf3 output: %v\n%s", err, out)
	}
	if res.Error != "" || res.End.SumReceived.Bytes == 0 {
		t.Fatalf("iperf3 to %s: error %q, %v bytes received", addr, res.Error, res.End.SumReceived.Bytes)
	}
	return res.End.SumReceived.BitsPerSecond / 1e6
}
