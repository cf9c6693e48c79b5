#!/usr/bin/env bash
# bench/config_start.sh N [NETSEMD]: the real netsemd with N defined names
# (`host%3A10.a.b.c%20job = limit` lines): wall and CPU time from exec to the
# `listening` log line, of the first status file, of a SIGHUP reload to the
# same names with every other limit changed (with the duration netsemd
# logs), of `--check-config`, and the peak RSS. docs/benchmarks.md
# ("Configuration load") has its figures. NETSEMD defaults to
# build/src/server/netsemd; everything lives in a temporary directory,
# removed at the end, and the server listens on a free loopback port.
set -euo pipefail
n=${1:?usage: $0 N [NETSEMD]}
bin=${2:-$(dirname "$0")/../build/src/server/netsemd}
dir=$(mktemp -d)
pid=
cleanup() {
  [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

# write_config SHIFT: SHIFT changes the limit of every other name.
write_config() {
  awk -v n="$n" -v d="$dir" -v shift="$1" 'BEGIN {
    printf "[server]\nbind_port = 0\nmax_semaphores = 100000000\nstatus_interval_ms = 3600000\n"
    printf "data_dir = %s/data\nstats_dir = %s/data\n[semaphores]\n", d, d
    for (i = 0; i < n; i++)
      printf "host%%3A10.%d.%d.%d%%20job = %d\n", int(i / 65536), int(i / 256) % 256, i % 256, (i + shift * (i % 2)) % 7 + 1
  }' > "$dir/netsem.ini"
}
now() { date +%s.%N; }
cpu() { awk '{ print ($14 + $15) / 100 }' "/proc/$pid/stat"; }
await() { until grep -q "$1" "$dir/log"; do sleep 0.01; done; }

write_config 0
t0=$(now)
"$bin" --config "$dir/netsem.ini" > "$dir/log" 2>&1 &
pid=$!
await "listening on"
t1=$(now); c1=$(cpu)
until [[ -s $dir/data/semaphore.status ]]; do sleep 0.01; done
t2=$(now); c2=$(cpu)
write_config 1
kill -HUP "$pid"
await "SIGHUP: reloaded"
t3=$(now); c3=$(cpu)
logged=$(grep -o "([0-9]* ms)" "$dir/log" | tail -n 1)
rss_kb=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
kill -TERM "$pid"
wait "$pid" || true
pid=
TIMEFORMAT='%R %U %S'
{ time "$bin" --check-config --config "$dir/netsem.ini" > /dev/null 2>&1; } 2> "$dir/check"
read -r check_wall check_user check_sys < "$dir/check"
awk -v n="$n" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" -v c1="$c1" -v c2="$c2" -v c3="$c3" \
  -v logged="$logged" -v cw="$check_wall" -v cu="$check_user" -v cs="$check_sys" -v rss="$rss_kb" 'BEGIN {
  printf "%d names: start cpu %.2fs (wall %.2fs) | status file cpu %.2fs (wall %.2fs) | reload cpu %.2fs (wall %.2fs, logged %s) | --check-config cpu %.2fs (wall %.2fs) | peak RSS %d MB\n",
    n, c1, t1 - t0, c2 - c1, t2 - t1, c3 - c2, t3 - t2, logged, cu + cs, cw, rss / 1024
}'
