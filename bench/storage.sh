#!/usr/bin/env bash
# bench/storage.sh - `make bench-storage`: the shared folders' WebDAV on
# loopback against rclone's WebDAV server (the peer, same disk, same curl),
# the vault across eight cloudboxd boxes in network namespaces against the
# overlay's plain TCP throughput (iperf3), and the CPU the owner spends per
# GB on encryption plus erasure coding. Prints one RESULT line last.
#
# Knobs (env): SIZE_MB (WebDAV file, default 256), ROUNDS (default 3),
# VAULT_MB (vault file, default 64). Needs root (namespaces), curl, rclone,
# iperf3.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bench/bin
RES=$ROOT/bench/results
SIZE_MB=${SIZE_MB:-256}
ROUNDS=${ROUNDS:-3}
VAULT_MB=${VAULT_MB:-64}
mkdir -p "$BIN" "$RES"
for c in curl rclone iperf3; do
  command -v "$c" >/dev/null || { echo "RESULT storage failed: $c missing (scripts/deps.sh test)"; exit 1; }
done
(cd "$ROOT" && go build -o "$BIN/cloudboxd" ./cmd/cloudboxd) || exit 1

TMP=$(mktemp -d /tmp/cloudbox-bench-storage.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT
OUT=$RES/storage-$(date +%Y%m%dT%H%M%S).out
exec > >(tee "$OUT") 2>&1

dd if=/dev/urandom of="$TMP/file" bs=1M count="$SIZE_MB" status=none
TOKEN=bench-storage-token-0123456789abcdef
echo "$TOKEN" > "$TMP/token"
"$BIN/cloudboxd" --state-dir "$TMP/box" --http 127.0.0.1:18480 --api-token-file "$TMP/token" \
  --dns off --mdns off --gateway-local off --storage-quota -1 2> "$TMP/cloudboxd.log" &
pids+=($!)
mkdir -p "$TMP/rclone"
rclone serve webdav "$TMP/rclone" --addr 127.0.0.1:18481 2> "$TMP/rclone.log" &
pids+=($!)
for port in 18480 18481; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done

# best of ROUNDS, Mbit/s: upload (PUT) and download (GET) of SIZE_MB
measure() { # url curl-args...
  local url=$1; shift
  local up=0 down=0 u d
  for _ in $(seq "$ROUNDS"); do
    u=$(curl -sS -o /dev/null -w '%{speed_upload}' "$@" -T "$TMP/file" "$url") || return 1
    d=$(curl -sS -o /dev/null -w '%{speed_download}' "$@" "$url") || return 1
    up=$(awk -v a="$up" -v b="$u" 'BEGIN { print (b * 8 / 1e6 > a) ? b * 8 / 1e6 : a }')
    down=$(awk -v a="$down" -v b="$d" 'BEGIN { print (b * 8 / 1e6 > a) ? b * 8 / 1e6 : a }')
  done
  printf '%.0f %.0f\n' "$up" "$down"
}
read -r ours_up ours_down < <(measure http://127.0.0.1:18480/dav/bench.bin -H "Authorization: Bearer $TOKEN" || echo na na)
read -r rc_up rc_down < <(measure http://127.0.0.1:18481/bench.bin || echo na na)
echo "webdav ${SIZE_MB} MiB, best of $ROUNDS: cloudbox up=$ours_up down=$ours_down Mbit/s; rclone serve webdav up=$rc_up down=$rc_down Mbit/s"

# CPU per GB of the owner's work (encryption + erasure coding + hashes).
bench=$(cd "$ROOT" && go test -run XXX -bench 'SealSplit|RebuildOpen' -benchtime 10x ./services/storage/vault/)
echo "$bench"
cpu_store=$(echo "$bench" | awk '/BenchmarkSealSplit/ { for (i = 1; i < NF; i++) if ($(i+1) == "cpu_s_per_gb") print $i }')
cpu_read=$(echo "$bench" | awk '/BenchmarkRebuildOpen/ { for (i = 1; i < NF; i++) if ($(i+1) == "cpu_s_per_gb") print $i }')

# The vault across namespaces: the meshtest's vault test with a benchmark
# file at the end (no race detector).
vault=$(cd "$ROOT" && CLOUDBOX_VAULT_BENCH_MB=$VAULT_MB go test -count=1 -timeout 10m -run 'TestVault$' -v ./overlay/meshtest/ 2>&1)
line=$(echo "$vault" | grep -o 'BENCH vault .*' | tail -1)
[ -n "$line" ] || echo "$vault" | grep -v '^        time=' | tail -30
echo "${line:-vault benchmark failed}"
val() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
vs=$(val store_mbps); vr=$(val read_mbps); ov=$(val overlay_tcp_mbps)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "na" || b == "na" || b + 0 == 0) print "na"; else printf "%.2f", a / b }'; }

echo "RESULT storage webdav_mbps=${ours_up:-na} vault_store_mbps=${vs:-na} vault_read_mbps=${vr:-na}" \
  "webdav_down_mbps=${ours_down:-na} rclone_webdav_mbps=${rc_up:-na} rclone_webdav_down_mbps=${rc_down:-na}" \
  "ratio_rclone=$(ratio "${ours_up:-na}" "${rc_up:-na}") ratio_rclone_down=$(ratio "${ours_down:-na}" "${rc_down:-na}")" \
  "overlay_tcp_mbps=${ov:-na} ratio_overlay_store=$(ratio "${vs:-na}" "${ov:-na}")" \
  "cpu_s_per_gb_store=${cpu_store:-na} cpu_s_per_gb_read=${cpu_read:-na}"
