#!/usr/bin/env bash
# bench/stream.sh - `make bench-stream`: run the shared stream-peers.sh harness
# (WHIP publisher of a 1.5 Mbit/s VP8 stream, N synthetic pion WHEP viewers on
# loopback, server pinned to one core) with our stream.Server
# (./stream/internal/benchserver) as the row "ours", next to a plain pion
# fan-out (pionfwd) and MediaMTX when MEDIAMTX_BIN names a binary; then time
# one relay hop and a viewer's first keyframe with BenchmarkRelayHop, and print
# one RESULT line. See bench/README.md.
#
# Knobs (env): PEERS_DIR (default ../shared/bench, or ../../shared/bench from a
# worktree), SERVERS (default "pionfwd ours", plus mediamtx with MEDIAMTX_BIN),
# STEPS (default "100 200 300 400 500 600 800 1000"), WINDOW, WARMUP, RATE, ...
# (passed to the harness). Needs root (taskset, /run lock).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PEERS_DIR:-}" ]; then
  PEERS_DIR=$ROOT/../shared/bench
  [ -r "$PEERS_DIR/stream-peers.sh" ] || PEERS_DIR=$ROOT/../../shared/bench
fi
BIN=$ROOT/bench/bin
RES=$ROOT/bench/results
mkdir -p "$BIN" "$RES"
[ -r "$PEERS_DIR/stream-peers.sh" ] || { echo "no $PEERS_DIR/stream-peers.sh (set PEERS_DIR)" >&2; exit 1; }
command -v ffmpeg >/dev/null || { echo "need ffmpeg (scripts/deps.sh)" >&2; exit 1; }
(cd "$ROOT" && go build -o "$BIN/streamserver" ./stream/internal/benchserver) || exit 1

default_servers="pionfwd ours"
[ -x "${MEDIAMTX_BIN:-}" ] && default_servers="mediamtx $default_servers"
export SERVERS=${SERVERS:-$default_servers}
export STEPS=${STEPS:-"100 200 300 400 500 600 800 1000"}

# The harness builds streamload beside itself: run a copy in a temp dir.
TMP=$(mktemp -d /tmp/cloudbox-bench-stream.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
cp -p "$PEERS_DIR/stream-peers.sh" "$TMP/"
cp -rp "$PEERS_DIR/streamload" "$TMP/"

STAMP=$(date +%Y%m%dT%H%M%S)
OUT=$RES/stream-$STAMP.out
export RESULTS_DIR=$RES
export OURS_VERSION="cloudbox stream $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo dev)"
export OURS_CMD="exec '$BIN/streamserver' -http \$SLB_HTTP"
bash "$TMP/stream-peers.sh" 2>&1 | tee "$OUT"
TSV=$(ls -t "$RES"/stream-peers-*.tsv 2>/dev/null | head -1)
[ -n "$TSV" ] && [ -r "$TSV" ] || { echo "RESULT stream failed: harness wrote no TSV (see $OUT)"; exit 1; }

# One relay hop and the first keyframe, on loopback (Go benchmark).
HOP=$(cd "$ROOT" && go test -run '^$' -bench BenchmarkRelayHop -benchtime 3x ./stream/ 2>&1 | tee -a "$OUT")
hop=$(awk '/BenchmarkRelayHop/ { for (i = 1; i < NF; i++) if ($(i+1) == "hop_ms") print $i }' <<<"$HOP")
first_kf=$(awk '/BenchmarkRelayHop/ { for (i = 1; i < NF; i++) if ($(i+1) == "first_ms") print $i }' <<<"$HOP")

# Per server: the largest step where every viewer kept up (connected, <= 1 %
# lossy or late, cores not saturated) and its time to first media; from the
# largest step measured (kept up or not) the CPU per 100 Mbit/s and the memory
# per viewer (RSS slope from the smallest step; with one step RSS / viewers, an
# upper bound); and the harness's own estimate of viewers per core (from CPU).
summary() {
  awk -F'\t' -v s="$1" -v sat="${SAT_PCT:-95}" '
    NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    $h["server"] != s { next }
    {
      n = $h["viewers_target"]; c = $h["viewers_connected"]; ok = $h["viewers_ok"]
      if (n0 == "") { n0 = n; r0 = $h["server_rss_mib"] }
      if (n > big) { big = n; cpu = $h["server_cpu_pct_per_100mbit"]; rss = $h["server_rss_mib"]; est = $h["viewers_per_core_est"] }
      if (c < n * 0.99 || ok < c * 0.99 || $h["server_core_busy_pct"] >= sat || $h["client_core_busy_pct"] >= sat) next
      if (n > best) { best = n; ttfm = $h["probe_ttfm_p50_ms"] }
    }
    END {
      if (big == "") { print "na na na na na"; exit }
      mib = (big > n0) ? (rss - r0) / (big - n0) : rss / big
      printf "%s %.3f %s %s %d\n", (best == "" ? "na" : best), mib, cpu, (ttfm == "" ? "na" : ttfm), est
    }' "$TSV"
}
read -r vpc mib cpu ttfm est <<<"$(summary ours)"
read -r p_vpc p_mib p_cpu _ p_est <<<"$(summary pionfwd)"
read -r m_vpc m_mib m_cpu _ m_est <<<"$(summary mediamtx)"
[ "$vpc" = na ] && echo "na because no step kept every viewer up; other load on the machine is in the TSV (other_load_cores); *_est is the harness's CPU-based estimate"
case " $SERVERS " in *" mediamtx "*) ;; *) echo "na because mediamtx was not run (set MEDIAMTX_BIN to a MediaMTX binary)" ;; esac
echo "viewers_per_core: the largest step (of STEPS=\"$STEPS\") where all viewers kept up; the harness stops at the first failing step"
echo "RESULT stream viewers_per_core=$vpc mib_per_viewer=$mib cpu_pct_per_100mbit=$cpu hop_latency_ms=${hop:-na} first_frame_ms=${ttfm:-na} first_keyframe_ms=${first_kf:-na} viewers_per_core_est=$est pionfwd_viewers_per_core=$p_vpc pionfwd_mib_per_viewer=$p_mib pionfwd_cpu_pct_per_100mbit=$p_cpu pionfwd_viewers_per_core_est=$p_est mediamtx_viewers_per_core=$m_vpc mediamtx_mib_per_viewer=$m_mib mediamtx_cpu_pct_per_100mbit=$m_cpu mediamtx_viewers_per_core_est=$m_est"
