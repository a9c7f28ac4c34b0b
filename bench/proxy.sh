#!/usr/bin/env bash
# bench/proxy.sh - `make bench-proxy`: run the shared proxy-peers.sh harness with
# our proxy (./services/proxy/internal/benchserver, no authentication) as the
# rows "cloudbox" (HTTP proxy + CONNECT) and "cloudbox-socks5", next to tinyproxy
# and Squid, then print one RESULT line. See bench/README.md.
#
# Knobs (env): PEERS_DIR (default ../shared/bench, or ../../shared/bench from a worktree), SYSTEMS (default
# "direct tinyproxy squid ours ours-socks5"), ROUNDS (default 3: the harness runs
# that many times and every figure of the RESULT line is the median over the
# rounds, each ratio taken within a round), DURATION, IDLE_CONNS, ... (passed to
# the harness). Needs root.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PEERS_DIR:-}" ]; then # beside the main checkout, or beside /work/wt/<worktree>
  PEERS_DIR=$ROOT/../shared/bench
  [ -r "$PEERS_DIR/proxy-peers.sh" ] || PEERS_DIR=$ROOT/../../shared/bench
fi
BIN=$ROOT/bench/bin
RES=$ROOT/bench/results
export SYSTEMS=${SYSTEMS:-"direct tinyproxy squid ours ours-socks5"}
mkdir -p "$BIN/proxy" "$RES"

[ -r "$PEERS_DIR/proxy-peers.sh" ] || { echo "no $PEERS_DIR/proxy-peers.sh (set PEERS_DIR)" >&2; exit 1; }
(cd "$ROOT" && go build -o "$BIN/proxynode" ./services/proxy/internal/benchserver) || exit 1

# proxy-peers.sh builds its Go tools from origin/ and proxyclient/ beside itself and
# writes a .gitignore there: run a copy in a temp dir (mtimes kept, so the tools in
# BIN_DIR are rebuilt only when the shared sources change).
TMP=$(mktemp -d /tmp/cloudbox-bench-proxy.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
cp -p "$PEERS_DIR/proxy-peers.sh" "$TMP/"
cp -rp "$PEERS_DIR/origin" "$PEERS_DIR/proxyclient" "$TMP/"

export RESULTS_DIR=$RES BIN_DIR=$BIN/proxy
export OURS_NAME=cloudbox OURS_VERSION="cloudbox services/proxy" OURS_SOCKS_PORT=${OURS_SOCKS_PORT:-18199}
export OURS_CMD="exec '$BIN/proxynode'"

ROUNDS=${ROUNDS:-3}
t0=$SECONDS
TSVS=()
for round in $(seq "$ROUNDS"); do
  STAMP=$(date +%Y%m%dT%H%M%S)
  OUT=$RES/proxy-$STAMP.out
  echo "== bench-proxy round $round of $ROUNDS"
  (cd "$ROOT" && bash "$TMP/proxy-peers.sh") 2>&1 | tee "$OUT"
  TSV=$(sed -n 's/^TSV: \([^ ]*\).*/\1/p' "$OUT" | tail -1)
  [ -n "$TSV" ] && [ -r "$TSV" ] || { echo "RESULT proxy failed: harness wrote no TSV in round $round (see $OUT)"; exit 1; }
  TSVS+=("$TSV")
done
elapsed=$((SECONDS - t0))

# value of column NAME for system S in $TSV, or "na"
col1() { awk -F'\t' -v s="$1" -v c="$2" 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
  $h["system"] == s { v = $h[c] } END { print (v == "" ? "na" : v) }' "$TSV"; }
# median over the rounds' values (words; "na"/"NA" ignored), or "na"
median() { printf '%s\n' "$@" | grep -Ev '^(na|NA|)$' | sort -g | awk '{ v[++n] = $1 + 0 }
  END { if (!n) print "na"; else print (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }'; }
# median over the rounds of column NAME for system S
col() { local vals=() TSV; for TSV in "${TSVS[@]}"; do vals+=("$(col1 "$1" "$2")"); done; median "${vals[@]}"; }
# median over the rounds of the ratio of A's column to the better of B and C's (C optional)
ratio_med() { local vals=() TSV a b; for TSV in "${TSVS[@]}"; do
    a=$(col1 "$1" "$2"); b=$(col1 "$3" "$2"); [ -n "${4:-}" ] && b=$(best "$b" "$(col1 "$4" "$2")")
    vals+=("$(ratio "$a" "$b")"); done; r=$(median "${vals[@]}"); [ "$r" = na ] && echo na || printf '%.2f\n' "$r"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "na" || b == "na" || a == "NA" || b == "NA" || b + 0 == 0) print "na"; else printf "%.2f", a / b }'; }
best() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || a == "na") a = 0; if (b == "NA" || b == "na") b = 0; m = (a > b) ? a : b; if (m > 0) print m; else print "na" }'; }

TSV=${TSVS[0]}
rps=$(col cloudbox s_rps); sq=$(col squid s_rps); tp=$(col tinyproxy s_rps)
socks_tls=$(col cloudbox-socks5 t_mbps)
rss=$(col cloudbox rss_idle_mib); alive=$(col cloudbox i_alive)
for s in tinyproxy squid; do
  case " $SYSTEMS " in *" $s "*) [ "$(col1 "$s" s_rps)" = na ] && echo "na because $s gave no row (see $OUT)" ;;
    *) echo "na because $s was not in SYSTEMS" ;; esac
done
echo "proxy bench took ${elapsed}s, $ROUNDS rounds (figures: medians over the rounds; ratios: medians of each round's ratio); TSVs ${TSVS[*]}"
for TSV in "${TSVS[@]}"; do
  echo "round $(basename "$TSV"): rps ours/squid $(col1 cloudbox s_rps)/$(col1 squid s_rps), tls MB/s ours/squid/tinyproxy/direct $(col1 cloudbox t_mbps)/$(col1 squid t_mbps)/$(col1 tinyproxy t_mbps)/$(col1 direct t_mbps)"
done
echo "RESULT proxy rps=$rps squid_rps=$sq ratio_squid=$(ratio_med cloudbox s_rps squid) tinyproxy_rps=$tp ratio_tinyproxy=$(ratio_med cloudbox s_rps tinyproxy) bulk_ratio_squid=$(ratio_med cloudbox b_mbps squid) bulk_ratio_best=$(ratio_med cloudbox b_mbps squid tinyproxy) tls_ratio_best=$(ratio_med cloudbox t_mbps squid tinyproxy) conn_ratio_best=$(ratio_med cloudbox c_rps squid tinyproxy) socks5_tls_mbps=$socks_tls rss_mib_1000conns=$rss idle_alive=$alive"
