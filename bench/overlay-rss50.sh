#!/usr/bin/env bash
# bench/overlay-rss50.sh - peak RSS of one overlaynode with 50 peers under
# load (see bench/README.md). Run by bench/overlay.sh; alone:
#   bash bench/overlay-rss50.sh bench/bin/overlaynode
# Two namespaces over a veth: M runs the measured node (overlaynode run
# -peers, 50 peers), S runs the 50 peers in one process (overlaynode swarm,
# UDP ports 51821..). M pings every peer (each must answer: 50 real
# handshakes), then iperf3 sends one TCP stream from M to peer 0 for DUR50
# seconds, then peer 0 sends back (STREAM50=0 skips the streams). Prints "rss50 kib=... pings_ok=N/50
# tcp_mbps=..." and exits non-zero when a ping or iperf3 failed. Needs root.
set -uo pipefail
NODE=${1:?usage: overlay-rss50.sh OVERLAYNODE}
N=${N50:-50}
DUR=${DUR50:-10}
M=cbrssM-$$ S=cbrssS-$$ W=$(mktemp -d /tmp/cloudbox-rss50.XXXXXX)
PM= PS=
cleanup() {
  for p in $PM $PS; do kill "$p" 2>/dev/null; done
  for p in $PM $PS; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null; done
  ip netns del "$M" 2>/dev/null; ip netns del "$S" 2>/dev/null
  [ -n "${KEEP:-}" ] && echo "kept $W" >&2 || rm -rf "$W"
}
trap cleanup EXIT
fail() { echo "rss50 failed: $*" >&2; exit 1; }
nsx() { local ns=$1; shift; timeout 60 ip netns exec "$ns" "$@"; }

ip netns add "$M" && ip netns add "$S" || fail "creating namespaces"
ip link add "rm$$" netns "$M" type veth peer name "rs$$" netns "$S" || fail "creating veth"
ip -n "$M" addr add 192.0.2.1/24 dev "rm$$"; ip -n "$S" addr add 192.0.2.2/24 dev "rs$$"
for ns in "$M" "$S"; do ip -n "$ns" link set lo up; done
ip -n "$M" link set "rm$$" up; ip -n "$S" link set "rs$$" up

names=(M); for ((i = 0; i < N; i++)); do names+=("P$i"); done
"$NODE" keygen "$W" "${names[@]}" || fail keygen
: >"$W/peers"
for ((i = 0; i < N; i++)); do
  echo "$W/P$i.pub 198.18.1.$((i + 1)) 192.0.2.2:$((51821 + i))" >>"$W/peers"
done
ip netns exec "$S" "$NODE" swarm -keys "$W" -n "$N" -port 51821 -addr 198.18.1.1 \
  -peer-pub "$W/M.pub" -peer-addr 198.18.0.1 -endpoint 192.0.2.1:51820 2>"$W/S.log" &
PS=$!
ip netns exec "$M" "$NODE" run -key "$W/M.key" -peers "$W/peers" -if ovm -addr 198.18.0.1/16 \
  -port 51820 -rss-file "$W/rss" ${RSS50_ARGS:-} 2>"$W/M.log" &
PM=$!
# Each swarm Engine answers from its own address through its own interface.
for ((i = 0; i < N; i++)); do
  for t in $(seq 100); do [ -n "$(ip -n "$S" link show dev "sw$i" up 2>/dev/null)" ] && break; sleep 0.1; done
  ip -n "$S" rule add from "198.18.1.$((i + 1))" table $((100 + i)) || fail "ip rule $i"
  ip -n "$S" route add 198.18.0.0/24 dev "sw$i" table $((100 + i)) || fail "route $i"
done
for t in $(seq 100); do ip -n "$M" link show ovm >/dev/null 2>&1 && break; sleep 0.1; done

# mem PHASE: M's VmRSS and VmHWM (KiB) now, one line per phase.
# With PROFILE_TO (and RSS50_ARGS="-pprof 127.0.0.1:6060") it also saves
# M's heap profile and memory map as PROFILE_TO.PHASE{,.smaps}.
mem() {
  awk -v p="$1" '/VmRSS/ { r = $2 } /VmHWM/ { h = $2 } END { printf "rss50 phase=%s rss_kib=%s hwm_kib=%s\n", p, r, h }' "/proc/$PM/status"
  [ -n "${PROFILE_TO:-}" ] || return 0
  nsx "$M" curl -s -o "$PROFILE_TO.$1" "http://127.0.0.1:6060/debug/pprof/heap?debug=1"
  cp "/proc/$PM/smaps" "$PROFILE_TO.$1.smaps"
}
ok=0
for ((i = 0; i < N; i++)); do
  nsx "$M" ping -c 1 -W 5 "198.18.1.$((i + 1))" >/dev/null 2>&1 && ((ok++))
done
# Connected and idle (keepalives, disco), then light traffic: 5 pings a
# second to every peer at once.
sleep "${IDLE50:-10}"; mem idle
pp=()
for ((i = 0; i < N; i++)); do
  nsx "$M" ping -q -c 25 -i 0.2 -W 2 "198.18.1.$((i + 1))" >/dev/null 2>&1 &
  pp+=($!)
done
wait "${pp[@]}"; mem light
up=na down=na
# STREAM50=0 stops here: only the idle and light phases (make test).
if [ "${STREAM50:-1}" != 0 ]; then
nsx "$S" iperf3 -s -1 -D -B 198.18.1.1 -p 5299 >/dev/null || fail "iperf3 server"
sleep 0.3
up=$(nsx "$M" iperf3 -c 198.18.1.1 -p 5299 -t "$DUR" -J 2>/dev/null | awk -F'[:,]' '/"bits_per_second"/ { v = $2 } END { printf "%.0f", v / 1e6 }')
nsx "$S" iperf3 -s -1 -D -B 198.18.1.1 -p 5299 >/dev/null || fail "iperf3 server"
sleep 0.3
down=$(nsx "$M" iperf3 -c 198.18.1.1 -p 5299 -t "$DUR" -R -J 2>/dev/null | awk -F'[:,]' '/"bits_per_second"/ { v = $2 } END { printf "%.0f", v / 1e6 }')
mem stream; sleep "${IDLE50:-10}"; mem after
fi
hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$PM/status" 2>/dev/null)
kill "$PM"; timeout 10 tail --pid="$PM" -f /dev/null; PM=
[ -s "$W/rss" ] && hwm=$(cat "$W/rss")
echo "rss50 kib=${hwm:-na} pings_ok=$ok/$N tcp_mbps=${up:-na} tcp_reverse_mbps=${down:-na}"
[ "$ok" = "$N" ] && { [ "${STREAM50:-1}" = 0 ] || { [ "${up:-0}" -gt 0 ] && [ "${down:-0}" -gt 0 ]; }; } || { tail -5 "$W/M.log" "$W/S.log" >&2; exit 1; }
