package appliance

import (
	"bytes"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// runtimeMetrics maps runtime/metrics samples to Prometheus metrics, named as
// the Prometheus Go client names them.
var runtimeMetrics = []struct {
	sample, name, typ, help string
}{
	{"/sched/goroutines:goroutines", "go_goroutines", "gauge", "Number of goroutines that currently exist."},
	{"/sched/gomaxprocs:threads", "go_sched_gomaxprocs_threads", "gauge", "GOMAXPROCS: threads that can execute Go code at once."},
	{"/memory/classes/heap/objects:bytes", "go_memory_classes_heap_objects_bytes", "gauge", "Memory occupied by live and not yet swept heap objects."},
	{"/memory/classes/total:bytes", "go_memory_classes_total_bytes", "gauge", "All memory mapped by the Go runtime."},
	{"/gc/cycles/total:gc-cycles", "go_gc_cycles_total_gc_cycles_total", "counter", "Completed GC cycles."},
}

// metrics serves the Prometheus text exposition format, version 0.0.4.
func (h *handler) metrics(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	writeMetric(&b, "cloudbox_build_info", "gauge", "Build facts of the running cloudboxd; always 1.", 1,
		"version", h.cfg.version, "board", h.cfg.board)
	writeMetric(&b, "cloudbox_uptime_seconds", "gauge", "Seconds since cloudboxd started.", h.uptime().Seconds())
	writeMetric(&b, "go_info", "gauge", "Go version that built cloudboxd; always 1.", 1, "version", runtime.Version())

	samples := make([]metrics.Sample, len(runtimeMetrics))
	for i, m := range runtimeMetrics {
		samples[i].Name = m.sample
	}
	metrics.Read(samples)
	for i, m := range runtimeMetrics {
		var v float64
		switch samples[i].Value.Kind() {
		case metrics.KindUint64:
			v = float64(samples[i].Value.Uint64())
		case metrics.KindFloat64:
			v = samples[i].Value.Float64()
		default:
			continue // not supported by this Go version
		}
		writeMetric(&b, m.name, m.typ, m.help, v)
	}
	if rss, ok := residentMemory(); ok {
		writeMetric(&b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", float64(rss))
	}
	writeMetric(&b, "process_start_time_seconds", "gauge", "Start time of cloudboxd since the Unix epoch in seconds.",
		float64(h.cfg.started.UnixNano())/float64(time.Second))

	if h.cfg.overlay != nil {
		writeOverlayMetrics(&b, h.cfg.overlay.view())
	}
	if h.cfg.dns != nil {
		writeDNSMetrics(&b, h.cfg.dns.view())
	}
	if h.cfg.catalog != nil {
		if cat := h.cfg.catalog.current(); cat != nil {
			cat.WriteMetrics(&b)
		}
	}
	if h.cfg.mdns != nil {
		h.cfg.mdns.writeMetrics(&b)
	}

	h.writeGatewayMetrics(&b)
	h.writeUpdateMetrics(&b)
	h.writeStorageMetrics(&b)
	h.writeStreamMetrics(&b)
	h.writeVoIPMetrics(&b)

	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b.Bytes())
}

// writeMetric writes one metric with HELP and TYPE lines; labels are name,
// value pairs.
func writeMetric(b *bytes.Buffer, name, typ, help string, value float64, labels ...string) {
	writeFamily(b, name, typ, help, sample{labels, value})
}

// sample is one line of a metric family: label name, value pairs and the
// value.
type sample struct {
	labels []string
	value  float64
}

// writeFamily writes a metric family: HELP and TYPE lines, then one line per
// sample.
func writeFamily(b *bytes.Buffer, name, typ, help string, samples ...sample) {
	b.WriteString("# HELP " + name + " " + help + "\n")
	b.WriteString("# TYPE " + name + " " + typ + "\n")
	for _, s := range samples {
		b.WriteString(name)
		if len(s.labels) > 0 {
			b.WriteByte('{')
			for i := 0; i+1 < len(s.labels); i += 2 {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(s.labels[i] + `="` + labelEscaper.Replace(s.labels[i+1]) + `"`)
			}
			b.WriteByte('}')
		}
		b.WriteByte(' ')
		b.WriteString(strconv.FormatFloat(s.value, 'g', -1, 64))
		b.WriteByte('\n')
	}
}

// labelEscaper escapes a label value as the text format requires.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
