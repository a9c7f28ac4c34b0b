#!/usr/bin/env bash
# bench/proxy.sh - `make bench-proxy`: run the shared proxy-peers.sh harness with
# our proxy (./services/proxy/internal/benchserver, no authentication) as the
# rows "cloudbox" (HTTP proxy + CONNECT) and "cloudbox-socks5", next to tinyproxy
# and Squid, then print one RESULT line. See bench/README.md.
#
# Knobs (env): PEERS_DIR (default ../shared/bench, or ../../shared/bench from a worktree), SYSTEMS (default
# "direct tinyproxy squid ours ours-socks5"), DURATION, IDLE_CONNS, ... (passed to
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

STAMP=$(date +%Y%m%dT%H%M%S)
OUT=$RES/proxy-$STAMP.out
export RESULTS_DIR=$RES BIN_DIR=$BIN/proxy
export OURS_NAME=cloudbox OURS_VERSION="cloudbox services/proxy" OURS_SOCKS_PORT=${OURS_SOCKS_PORT:-18199}
export OURS_CMD="exec '$BIN/proxynode'"

t0=$SECONDS
(cd "$ROOT" && bash "$TMP/proxy-peers.sh") 2>&1 | tee "$OUT"
elapsed=$((SECONDS - t0))

TSV=$(sed -n 's/^TSV: \([^ ]*\).*/\1/p' "$OUT" | tail -1)
[ -n "$TSV" ] && [ -r "$TSV" ] || { echo "RESULT proxy failed: harness wrote no TSV (see $OUT)"; exit 1; }

# value of column NAME for system S, or "na"
col() { awk -F'\t' -v s="$1" -v c="$2" 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
  $h["system"] == s { v = $h[c] } END { print (v == "" ? "na" : v) }' "$TSV"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "na" || b == "na" || a == "NA" || b == "NA" || b + 0 == 0) print "na"; else printf "%.2f", a / b }'; }
best() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || a == "na") a = 0; if (b == "NA" || b == "na") b = 0; m = (a > b) ? a : b; if (m > 0) print m; else print "na" }'; }

rps=$(col cloudbox s_rps); sq=$(col squid s_rps); tp=$(col tinyproxy s_rps)
bulk=$(col cloudbox b_mbps); bulk_sq=$(col squid b_mbps); bulk_tp=$(col tinyproxy b_mbps)
tls=$(col cloudbox t_mbps); tls_best=$(best "$(col squid t_mbps)" "$(col tinyproxy t_mbps)")
conn=$(col cloudbox c_rps); conn_best=$(best "$(col squid c_rps)" "$(col tinyproxy c_rps)")
socks_tls=$(col cloudbox-socks5 t_mbps)
rss=$(col cloudbox rss_idle_mib); alive=$(col cloudbox i_alive)
for s in tinyproxy squid; do
  case " $SYSTEMS " in *" $s "*) [ "$(col "$s" s_rps)" = na ] && echo "na because $s gave no row (see $OUT)" ;;
    *) echo "na because $s was not in SYSTEMS" ;; esac
done
echo "proxy bench took ${elapsed}s; TSV $TSV; harness output $OUT"
echo "RESULT proxy rps=$rps squid_rps=$sq ratio_squid=$(ratio "$rps" "$sq") tinyproxy_rps=$tp ratio_tinyproxy=$(ratio "$rps" "$tp") bulk_ratio_squid=$(ratio "$bulk" "$bulk_sq") bulk_ratio_best=$(ratio "$bulk" "$(best "$bulk_sq" "$bulk_tp")") tls_ratio_best=$(ratio "$tls" "$tls_best") conn_ratio_best=$(ratio "$conn" "$conn_best") socks5_tls_mbps=$socks_tls rss_mib_1000conns=$rss idle_alive=$alive"
