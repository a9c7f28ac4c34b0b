#!/usr/bin/env bash
# bench/overlay.sh - `make bench-overlay`: run the shared overlay-peers.sh harness
# with our overlay (bench/overlaynode, an overlay.Engine per namespace) as one more
# row, then print one RESULT line. See bench/README.md.
#
# Knobs (env): PEERS_DIR (default ../shared/bench), SYSTEMS (harness rows besides
# ours; default "veth wireguard-go nebula tinc"), DUR, ROUNDS, PAR, INSTALL, ... (passed to
# the harness). Needs root.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/bench}
BIN=$ROOT/bench/bin
RES=$ROOT/bench/results
export SYSTEMS=${SYSTEMS:-"veth wireguard-go nebula tinc"}
mkdir -p "$BIN" "$RES"

[ -r "$PEERS_DIR/overlay-peers.sh" ] || { echo "no $PEERS_DIR/overlay-peers.sh (set PEERS_DIR)" >&2; exit 1; }
# Without cgo, as on a box (gokrazy): no libc pages in the RSS figures.
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/overlaynode" ./bench/overlaynode) || exit 1

# Run a copy: the harness writes a .gitignore beside itself, and shared/ stays untouched.
TMP=$(mktemp -d /tmp/cloudbox-bench-overlay.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
cp "$PEERS_DIR/overlay-peers.sh" "$TMP/"

STAMP=$(date +%Y%m%dT%H%M%S)
RSS_PREFIX=$RES/overlaynode-rss-$STAMP
OUT=$RES/overlay-$STAMP.out
NODE=$BIN/overlaynode

export BENCH_DIR=$TMP BIN_DIR=$BIN RESULTS_DIR=$RES
export OVERLAY_NAME=cloudbox OVERLAY_ASSIGN_ADDR=0 OVERLAY_VERSION="cloudbox overlay.Engine"
export OVERLAY_SETUP_CMD="'$NODE' keygen \"\$OVL_WORKDIR\" A B"
OVERLAY_CMD='other=B; [ "$OVL_NODE" = B ] && other=A; exec '"'$NODE'"' run -key "$OVL_WORKDIR/$OVL_NODE.key" -peer-pub "$OVL_WORKDIR/$other.pub" -if "$OVL_IF" -addr "$OVL_ADDR/$OVL_PREFIX" -peer-addr "$OVL_PEER_ADDR" -endpoint "$UL_PEER:51820" -port 51820 -rss-file '"'$RSS_PREFIX'"'-$OVL_NODE'
export OVERLAY_CMD_A=$OVERLAY_CMD OVERLAY_CMD_B=$OVERLAY_CMD

t0=$SECONDS
(cd "$ROOT" && bash "$TMP/overlay-peers.sh") 2>&1 | tee "$OUT"
elapsed=$((SECONDS - t0))

# Peak RSS with 50 peers (bench/overlay-rss50.sh); RSS50=0 skips it.
rss50=na
if [ "${RSS50:-1}" != 0 ]; then
  line=$(bash "$ROOT/bench/overlay-rss50.sh" "$NODE" 2>&1 | tee -a "$OUT" | grep '^rss50 ' | tail -1)
  kib=$(sed -n 's/.*kib=\([0-9]*\).*/\1/p' <<<"$line")
  case "$line" in *"pings_ok=50/50"*) [ -n "$kib" ] && rss50=$(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }') ;; esac
  [ "$rss50" = na ] && echo "na because rss50: ${line:-overlay-rss50.sh failed (see $OUT)}"
fi

TSV=$(sed -n 's/^TSV: //p' "$OUT" | tail -1)
[ -n "$TSV" ] && [ -r "$TSV" ] || { echo "RESULT overlay failed: harness wrote no TSV (see $OUT)"; exit 1; }

# mean over ok rows of column C for system S, or "na"
col() { awk -F'\t' -v s="$1" -v c="$2" 'NR > 1 && $3 == s && $4 == "ok" && $c != "-" { t += $c; n++ }
  END { if (n) printf "%.1f", t / n; else print "na" }' "$TSV"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "na" || b == "na" || b + 0 == 0) print "na"; else printf "%.2f", a / b }'; }
why() { # why a peer row is missing
  awk -F'\t' -v s="$1" 'NR > 1 && $3 == s && $4 != "ok" { print s ": " $24; exit }' "$TSV"
}

ours=$(col cloudbox 6); ours4=$(col cloudbox 8); ourscpu=$(col cloudbox 18)
wg=$(col wireguard-go 6); wg4=$(col wireguard-go 8); wgcpu=$(col wireguard-go 18)
tinc=$(col tinc 6); tinc4=$(col tinc 8); tinccpu=$(col tinc 18)
neb=$(col nebula 6)
rss=na
if ls "$RSS_PREFIX"-* >/dev/null 2>&1; then
  rss=$(cat "$RSS_PREFIX"-* | awk '{ if ($1 > m) m = $1 } END { printf "%.1f", m / 1024 }')
  rm -f "$RSS_PREFIX"-*
fi
for s in cloudbox wireguard-go tinc nebula; do
  case " $SYSTEMS cloudbox " in *" $s "*) w=$(why "$s"); [ -n "$w" ] && echo "na because $w" ;; *) echo "na because $s was not in SYSTEMS" ;; esac
done
echo "overlay bench took ${elapsed}s; TSV $TSV; harness output $OUT"
echo "RESULT overlay tcp1_mbps=$ours wireguard_go_tcp1_mbps=$wg ratio_wg=$(ratio "$ours" "$wg") tinc_tcp1_mbps=$tinc ratio_tinc=$(ratio "$ours" "$tinc") tcp4_mbps=$ours4 wireguard_go_tcp4_mbps=$wg4 tinc_tcp4_mbps=$tinc4 cpu_s_per_gb=$ourscpu wireguard_go_cpu_s_per_gb=$wgcpu tinc_cpu_s_per_gb=$tinccpu rss_mib=$rss rss50_mib=$rss50 nebula_tcp1_mbps=$neb ratio_nebula=$(ratio "$ours" "$neb")"
