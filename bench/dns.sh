#!/usr/bin/env bash
# bench/dns.sh - `make bench-dns`: run the shared dns-peers.sh harness with our
# dnsproxy (./dnsproxy/internal/benchserver) as the "ours" row, then print one
# RESULT line. See bench/README.md.
#
# Knobs (env): PEERS_DIR (default ../shared/bench), SERVERS (default
# "dnsmasq coredns ours"), SCENARIOS (default "auth cache"), DURATION, ... (passed
# to the harness). Needs root.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/bench}
BIN=$ROOT/bench/bin
RES=$ROOT/bench/results
export SERVERS=${SERVERS:-"dnsmasq coredns ours"}
mkdir -p "$BIN/dns" "$RES"

[ -r "$PEERS_DIR/dns-peers.sh" ] || { echo "no $PEERS_DIR/dns-peers.sh (set PEERS_DIR)" >&2; exit 1; }
(cd "$ROOT" && go build -o "$BIN/benchserver" ./dnsproxy/internal/benchserver) || exit 1

# dns-peers.sh puts bin/ (CoreDNS) and a .gitignore beside itself whatever BIN_DIR says:
# run a copy in a temp dir whose bin/ points at bench/bin/dns, so CoreDNS is built once.
TMP=$(mktemp -d /tmp/cloudbox-bench-dns.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
cp "$PEERS_DIR/dns-peers.sh" "$TMP/"
ln -s "$BIN/dns" "$TMP/bin"

STAMP=$(date +%Y%m%dT%H%M%S)
OUT=$RES/dns-$STAMP.out
export RESULTS_DIR=$RES BIN_DIR=$BIN/dns
export OURS_NAME=cloudbox OURS_VERSION="cloudbox dnsproxy" OURS_CMD="exec '$BIN/benchserver'"

t0=$SECONDS
(cd "$ROOT" && bash "$TMP/dns-peers.sh") 2>&1 | tee "$OUT"
elapsed=$((SECONDS - t0))

TSV=$(sed -n 's/^TSV: //p' "$OUT" | tail -1)
[ -n "$TSV" ] && [ -r "$TSV" ] || { echo "RESULT dns failed: harness wrote no TSV (see $OUT)"; exit 1; }

# mean of column C for server S in scenario SC (qps > 0 only), or "na"
col() { awk -F'\t' -v s="$1" -v sc="$2" -v c="$3" -v f="$4" 'NR > 1 && $4 == s && $6 == sc && $9 > 0 { t += $c; n++ }
  END { if (n) printf f, t / n; else print "na" }' "$TSV"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "na" || b == "na" || b + 0 == 0) print "na"; else printf "%.2f", a / b }'; }

ours=$(col cloudbox cache 9 %.0f); dm=$(col dnsmasq cache 9 %.0f); cd=$(col coredns cache 9 %.0f)
oursa=$(col cloudbox auth 9 %.0f); dma=$(col dnsmasq auth 9 %.0f); cda=$(col coredns auth 9 %.0f)
rss=$(awk -F'\t' 'NR > 1 && $4 == "cloudbox" && $22 > m { m = $22 } END { if (m) printf "%.1f", m; else print "na" }' "$TSV")
p99=$(col cloudbox cache 19 %.3f)
for s in dnsmasq coredns; do
  case " $SERVERS " in *" $s "*) [ "$(col "$s" cache 9 %.0f)" = na ] && echo "na because $s gave no cache-scenario row (see $OUT)" ;;
    *) echo "na because $s was not in SERVERS" ;; esac
done
echo "dns bench took ${elapsed}s; TSV $TSV; harness output $OUT"
echo "RESULT dns cached_qps=$ours dnsmasq_cached_qps=$dm ratio_dnsmasq=$(ratio "$ours" "$dm") coredns_cached_qps=$cd ratio_coredns=$(ratio "$ours" "$cd") rss_mib=$rss auth_qps=$oursa dnsmasq_auth_qps=$dma coredns_auth_qps=$cda cached_p99_ms=$p99"
