#!/usr/bin/env bash
# bench/voip.sh - `make bench-voip`: run the shared voip-peers.sh harness
# (SIPp load on loopback; Kamailio + rtpengine as the peer) with our SIP
# server (./bench/voipnode: stream/voip's registrar, proxy and media relay)
# as the row "cloudbox", then print one RESULT line. See bench/README.md.
#
# Knobs (env): PEERS_DIR (default ../shared/bench, or ../../shared/bench from a
# worktree), SERVERS (default "kamailio ours"), TESTS, and every step knob of
# the harness (REG_STEPS, CPS_STEPS, RTP_STEPS, ...). Needs root.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PEERS_DIR:-}" ]; then # beside the main checkout, or beside /work/wt/<worktree>
  PEERS_DIR=$ROOT/../shared/bench
  [ -r "$PEERS_DIR/voip-peers.sh" ] || PEERS_DIR=$ROOT/../../shared/bench
fi
BIN=$ROOT/bench/bin
RES=$ROOT/bench/results
mkdir -p "$BIN" "$RES"
[ -r "$PEERS_DIR/voip-peers.sh" ] || { echo "no $PEERS_DIR/voip-peers.sh (set PEERS_DIR)" >&2; exit 1; }
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/voipnode" ./bench/voipnode) || exit 1

# Run a copy: the harness is a tool, not part of the repository.
TMP=$(mktemp -d /tmp/cloudbox-bench-voip.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
cp -p "$PEERS_DIR/voip-peers.sh" "$TMP/"

STAMP=$(date +%Y%m%dT%H%M%S)
OUT=$RES/voip-$STAMP.out
export RESULTS_DIR=$RES OURS_NAME=cloudbox SERVERS=${SERVERS:-"kamailio ours"}
# The harness starts it with bash -c, per test, with SIP_AUTH=1 for reg_auth.
export OURS_CMD="exec '$BIN/voipnode' -listen \$SIP_ADDR:\$SIP_PORT -domain \$SIP_DOMAIN -rtp \$RTP_ADDR \
-rtp-min \$RTP_PORT_MIN -rtp-max \$RTP_PORT_MAX \$( [ \"\$SIP_AUTH\" = 1 ] && echo -password \$SIP_AUTH_PASSWORD )"

t0=$SECONDS
(cd "$ROOT" && bash "$TMP/voip-peers.sh") 2>&1 | tee "$OUT"
elapsed=$((SECONDS - t0))

TSV=$(sed -n 's/.*tsv=\([^ ]*\).*/\1/p' "$OUT" | head -1)
[ -n "$TSV" ] && [ -r "$TSV" ] || { echo "RESULT voip failed: harness wrote no TSV (see $OUT)"; exit 1; }

# anchor value of SERVER's TEST, or "na"
anchor() { awk -F'\t' -v s="$1" -v t="$2" 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
  $h["row"] == "anchor" && $h["server"] == s && $h["test"] == t { v = $h["anchor_value"] } END { print (v == "" ? "na" : v) }' "$TSV"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "na" || b == "na" || b + 0 == 0) print "na"; else printf "%.2f", a / b }'; }

calls=$(anchor cloudbox rtp); kcalls=$(anchor kamailio rtp)
cps=$(anchor cloudbox cps); kcps=$(anchor kamailio cps)
setup=$(anchor cloudbox setup); ksetup=$(anchor kamailio setup)
reg=$(anchor cloudbox reg); kreg=$(anchor kamailio reg)
rega=$(anchor cloudbox reg_auth); krega=$(anchor kamailio reg_auth)
echo "voip bench took ${elapsed}s; TSV $TSV; harness output $OUT"
echo "RESULT voip concurrent_calls=$calls kamailio_concurrent_calls=$kcalls ratio_calls=$(ratio "$calls" "$kcalls") cps=$cps ratio_cps=$(ratio "$cps" "$kcps") setup_ms=$setup kamailio_setup_ms=$ksetup reg_per_s=$reg kamailio_reg_per_s=$kreg reg_auth_per_s=$rega kamailio_reg_auth_per_s=$krega"
