#!/usr/bin/env bash
# bench/callgrind.sh: netsemd's instructions per request, by scenario, as
# callgrind counts them: repeatable where timings are not, so that a change
# can be compared with a baseline on a noisy machine (issue 11: no scenario
# may lose more than 3 %).
#
# For each scenario, netsemd runs under `valgrind --tool=callgrind` on a
# fresh data directory, netsem-bench drives a fixed number of ops (--ops N,
# no warm-up), netsemd is stopped and callgrind's total of instructions (Ir,
# user space only: the kernel's work is not in it) is read; then again with
# 2N ops. The difference of the two totals divided by the difference of the
# ops the bench counted is the steady-state cost of one op: start-up,
# connections, shutdown and the status file (rewritten once an hour here)
# cancel out. An op of cycle1, contended, spread and pipelined is one cycle
# (an acquire and a release: two requests); an op of ace is one connection
# (connect, acquire, release, close). The table prints both per op and per
# request (op / 2). contended512 is contended with 512 clients (502 waiters).
#
# The count depends a little on how requests batch between the server's
# reads (under callgrind the server is slow and the generator is not, so the
# batches are larger than natively): between two runs here cycle1, contended
# and pipelined agreed within 0.1 %, spread within 1 %, ace within 7 % (its
# connections end on timers); rerun a scenario before reading a difference
# below that. To see where a difference comes from, keep the outputs
# (--keep DIR) and compare `callgrind_annotate DIR/cg-SCENARIO-long.PID`
# with its baseline's.
#
# Usage: bench/callgrind.sh [--ops N] [--scenarios "S ..."] [--build-dir DIR]
#                           [--netsemd PATH] [--bench PATH] [--no-build]
#                           [--keep DIR]
#   --ops N          ops of the shorter run of each scenario [default: 20000;
#                    ace: N/4]; the longer run makes 2N
#   --scenarios "…"  [default: cycle1 contended spread pipelined ace contended512]
#   --build-dir DIR  where netsemd and netsem-bench are built (Release)
#                    [default: build-release]
#   --netsemd PATH   measure this netsemd instead (e.g. an older build); the
#                    bench still comes from --build-dir
#   --bench PATH     use this netsem-bench
#   --no-build       use the binaries already built
#   --keep DIR       keep callgrind's outputs and the bench's JSON in DIR
# Prints `scenario ops instr/op instr/request` lines, then one line
#   callgrind: cycle1=I contended=I ... (instructions per request)
# Needs valgrind (apt-get install valgrind). About 4 minutes on 2 cores.
set -euo pipefail

# shellcheck source=bench/compare.sh
source "$(dirname "${BASH_SOURCE[0]}")/compare.sh"
log_prefix=callgrind

# Starts netsemd under callgrind with its output in $work/cg-$1.out (child
# processes of ForkedJob write theirs beside it, named by pid, and are
# ignored). Sets NETSEM_PID, NETSEM_PORT and NETSEM_DIR.
start_netsem_callgrind() {
  local label=$1
  NETSEM_DIR=$work/$label
  mkdir -p "$NETSEM_DIR/data"
  cat >"$NETSEM_DIR/netsem.ini" <<EOF
[server]
bind_address = 127.0.0.1
bind_port = 0
stats_dir = $NETSEM_DIR/data
data_dir = $NETSEM_DIR/data
status_interval_ms = 3600000
log_level = info
max_connections = 20000

[semaphores]
bench.contended = 10
EOF
  valgrind --tool=callgrind --callgrind-out-file="$work/cg-$label.%p" \
    "$NETSEMD" --config "$NETSEM_DIR/netsem.ini" 2>"$NETSEM_DIR/log" &
  NETSEM_PID=$!
  local line i
  # valgrind takes a few seconds to start a program: wait longer than
  # wait_for_log does.
  for ((i = 0; i < 3; i++)); do
    if line=$(wait_for_log "$NETSEM_PID" "$NETSEM_DIR/log" 'listening on 127\.0\.0\.1:[0-9]+' netsemd 2>/dev/null); then
      NETSEM_PORT=${line##*:}
      return 0
    fi
    kill -0 "$NETSEM_PID" 2>/dev/null || break
  done
  tail -n 20 "$NETSEM_DIR/log" >&2
  die "netsemd did not start under valgrind"
}

# measure LABEL SCENARIO OPS: one run; sets counted (the ops the bench
# counted) and instructions (callgrind's total for netsemd).
counted='' instructions=''
measure() {
  local label=$1 scenario=$2 ops=$3 clients=() pid file
  [[ $scenario == contended512 ]] && scenario=contended clients=(--clients 512)
  start_netsem_callgrind "$label"
  pid=$NETSEM_PID
  run_bench "$work/$label.json" netsem --scenario "$scenario" "${clients[@]}" --ops "$ops" \
    --seconds 3600 --warmup 0
  stop_netsem
  file=$work/cg-$label.$pid
  [[ -s $file ]] || die "callgrind wrote no $file"
  counted=$(grep -oE '"ops":[0-9]+' "$work/$label.json" | cut -d: -f2)
  instructions=$(grep -m1 -E '^(summary|totals):' "$file" | awk '{print $2}')
  [[ -n $counted && -n $instructions ]] || die "no ops or no total for $label"
}

main() {
  local ops=20000 scenarios="cycle1 contended spread pipelined ace contended512" netsemd_override='' bench_override=''
  local keep=''
  do_install=0
  while [[ $# -gt 0 ]]; do
    case $1 in
      --ops) ops=${2:?--ops needs a number} ;;
      --scenarios) scenarios=${2:?--scenarios needs a list} ;;
      --netsemd) netsemd_override=${2:?--netsemd needs a path} ;;
      --bench) bench_override=${2:?--bench needs a path} ;;
      --build-dir) build_dir=${2:?--build-dir needs a directory} ;;
      --keep) keep=${2:?--keep needs a directory} ;;
      --no-build)
        do_build=0
        shift
        continue
        ;;
      -h | --help)
        print_usage
        return 0
        ;;
      *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift 2
  done
  [[ $ops =~ ^[1-9][0-9]*$ ]] || die "--ops must be a positive integer"
  [[ $build_dir = /* ]] || build_dir=$PWD/$build_dir
  command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
  if [[ -n $netsemd_override && -n $bench_override ]]; then
    do_build=0
    PYTHON=$(command -v python3) || die "python3 is missing"
  else
    install_and_build
  fi
  [[ -n $netsemd_override ]] && NETSEMD=$(realpath "$netsemd_override")
  [[ -n $bench_override ]] && BENCH=$(realpath "$bench_override")
  [[ -x $NETSEMD && -x $BENCH ]] || die "no netsemd ($NETSEMD) or netsem-bench ($BENCH)"
  # (not `--help | grep -q`: grep's early exit would fail the pipe)
  [[ $("$BENCH" --help) == *--ops* ]] || die "$BENCH has no --ops (build a newer netsem-bench)"
  setup_workspace
  log "netsemd: $NETSEMD"

  local scenario n short long line summary=''
  printf '%-13s %9s %12s %14s\n' scenario ops instr/op instr/request
  for scenario in $scenarios; do
    case $scenario in
      cycle1 | contended | spread | pipelined | contended512) n=$ops ;;
      ace) n=$((ops / 4 > 0 ? ops / 4 : 1)) ;;
      *) die "unknown scenario $scenario" ;;
    esac
    measure "$scenario-short" "$scenario" "$n"
    short="$counted $instructions"
    measure "$scenario-long" "$scenario" $((2 * n))
    long="$counted $instructions"
    line=$(awk -v s="$short" -v l="$long" -v name="$scenario" 'BEGIN {
      split(s, a, " "); split(l, b, " ");
      if (b[1] <= a[1]) { print "error"; exit }
      per = (b[2] - a[2]) / (b[1] - a[1]);
      printf "%-13s %9d %12.0f %14.0f\n", name, b[1] - a[1], per, per / 2 }')
    [[ $line != error ]] || die "$scenario: the longer run counted no more ops"
    printf '%s\n' "$line"
    summary+=" $scenario=$(awk '{print $4}' <<<"$line")"
  done
  echo "callgrind:$summary"
  if [[ -n $keep ]]; then
    mkdir -p "$keep"
    cp "$work"/cg-* "$work"/*.json "$keep"/
    log "callgrind's outputs are in $keep"
  fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
