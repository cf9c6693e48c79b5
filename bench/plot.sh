#!/usr/bin/env bash
# bench/plot.sh: how netsemd's costs grow, as PNGs in docs/img/ (issue 5).
#
# Installs what it needs (as bench/compare.sh does, plus gnuplot-nox), builds
# the Release netsemd and netsem-bench, starts netsemd and the floor on free
# loopback ports, and runs three sweeps with netsem-bench, netsemd and the
# floor back to back at every point (their order rotating), --reps times,
# keeping the median of each figure:
#   scaling-clients  spread (each client cycles on a name of its own) with 1 to
#                    256 clients: cycles/s and server CPU µs per cycle;
#   queue-length     contended (every client on one name of limit 10) with 16
#                    to 512 clients, so 6 to 502 waiters: acquire p50/p99
#                    latency and cycles/s;
#   names            netsemd alone, a fresh one per point: RSS with 10,000 to
#                    1,000,000 created semaphores, and bytes per semaphore
#                    (memory does not drift, so one run per point).
# The medians go to DIR/NAME.dat (whitespace-separated, with a header saying
# how they were made) and bench/plot.gp renders DIR/NAME.png from them; with
# --replot only that last step runs.
#
# Usage: bench/plot.sh [--reps N] [--seconds S] [--warmup S] [--out DIR]
#                      [--only NAME] [--replot] [--no-install] [--no-build]
#                      [--build-dir DIR]
#   defaults: 3 repetitions of 2 s (0.5 s warm-up) per point, into docs/img:
#   about 4 minutes on 2 cores (--reps 1: about 1.5 minutes)
#   --only NAME   one of scaling-clients, queue-length, names
set -euo pipefail

# shellcheck source=bench/compare.sh
source "$(dirname "${BASH_SOURCE[0]}")/compare.sh"
log_prefix=plot

scaling_clients=(1 2 4 8 16 32 64 128 256)
queue_clients=(16 32 64 128 256 512)
names_counts=(10000 30000 100000 300000 1000000)

# sweep NAME SCENARIO EXTRA_ARGS... -- X...: runs SCENARIO with --clients X
# against netsemd and the floor, into $json/NAME-X-SYSTEM-rR.json.
sweep() {
  local name=$1 scenario=$2 extra=() xs=() rep k i x system systems=(netsem floor)
  shift 2
  while [[ $1 != -- ]]; do
    extra+=("$1")
    shift
  done
  shift
  xs=("$@")
  for ((rep = 0; rep < reps; rep++)); do
    # Odd repetitions walk the points backwards, so that a slow spell of the
    # machine does not fall on the same points every time.
    local order=("${!xs[@]}")
    if ((rep % 2 == 1)); then
      order=()
      for ((k = ${#xs[@]} - 1; k >= 0; k--)); do order+=("$k"); done
    fi
    for k in "${order[@]}"; do
      x=${xs[$k]}
      for i in 0 1; do
        system=${systems[(i + rep + k) % 2]}
        run_bench "$json/$name-$x-$system-r$rep.json" "$system" --scenario "$scenario" --clients "$x" \
          --seconds "$seconds" --warmup "$warmup" "${extra[@]}"
      done
    done
  done
}

# Writes DIR/NAME.dat from the JSON runs: the median over the repetitions of
# every figure, one line per point.
tabulate() {
  "$PYTHON" - "$json" "$out" "$1" "$header" <<'EOF'
import glob, json, os, re, statistics, sys

json_dir, out_dir, name, header = sys.argv[1:5]
points = {}
for path in glob.glob(os.path.join(json_dir, name + "-*.json")):
    match = re.match(re.escape(name) + r"-(\d+)-([a-z]+)-r\d+\.json$", os.path.basename(path))
    with open(path, encoding="utf-8") as f:
        run = json.load(f)
    points.setdefault(int(match.group(1)), {}).setdefault(match.group(2), []).append(run)

def median(runs, field):
    values = [field(r) for r in runs if field(r) is not None]
    return statistics.median(values) if values else float("nan")

def cpu_per_create(run):
    # CPU time comes in 10 ms ticks: a run too short for one tick says 0,
    # which is no measurement, so it is written as nan.
    value = run["server_cpu_us_per_op"]
    return value if value else float("nan")

with open(os.path.join(out_dir, name + ".dat"), "w", encoding="utf-8") as out:
    out.write(header)
    if name == "names":
        out.write("# names  rss_before_MiB  rss_after_MiB  bytes_per_semaphore  creates_per_s  server_cpu_us_per_create\n")
        for x in sorted(points):
            run = points[x]["netsem"][0]
            out.write(f"{x} {run['server_rss_before'] / 1048576:.2f} {run['server_rss_after'] / 1048576:.2f} "
                      f"{run['bytes_per']:.1f} {run['ops_per_s']:.0f} {cpu_per_create(run):.3f}\n")
    else:
        out.write("# clients  netsemd_cycles_per_s  floor_cycles_per_s  netsemd_server_cpu_us  floor_server_cpu_us"
                  "  netsemd_p50_us  floor_p50_us  netsemd_p99_us  floor_p99_us  netsemd_errors  floor_errors\n")
        for x in sorted(points):
            n, f = points[x].get("netsem", []), points[x].get("floor", [])
            cols = [median(n, lambda r: r["ops_per_s"]), median(f, lambda r: r["ops_per_s"]),
                    median(n, lambda r: r["server_cpu_us_per_op"]), median(f, lambda r: r["server_cpu_us_per_op"]),
                    median(n, lambda r: r["latency_us"]["p50"]), median(f, lambda r: r["latency_us"]["p50"]),
                    median(n, lambda r: r["latency_us"]["p99"]), median(f, lambda r: r["latency_us"]["p99"])]
            errors = [sum(r["errors"] for r in n), sum(r["errors"] for r in f)]
            out.write(f"{x} " + " ".join(f"{c:.3f}" for c in cols) + f" {errors[0]} {errors[1]}\n")
EOF
  log "wrote $out/$1.dat"
}

main() {
  local only='' replot=0 option_words
  reps=3 seconds=2 warmup=0.5 out=$repo/docs/img
  while [[ $# -gt 0 ]]; do
    case $1 in
      --only) option_words=2 only=${2:?--only needs a figure} ;;
      --replot) option_words=1 replot=1 ;;
      -h | --help)
        print_usage
        return 0
        ;;
      *) parse_common_option "$@" ;;
    esac
    shift "$option_words"
  done
  check_common_options
  case $only in
    '' | scaling-clients | queue-length | names) ;;
    *) die "--only takes scaling-clients, queue-length or names" ;;
  esac
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  local figures=(scaling-clients queue-length names)
  [[ -z $only ]] || figures=("$only")

  if [[ $replot -eq 1 ]]; then
    [[ $do_install -eq 0 ]] || ensure_packages gnuplot-nox
  else
    install_and_build gnuplot-nox
    setup_workspace
    json=$work/json
    mkdir -p "$json"
    header="# made by bench/plot.sh on $(date -u +%Y-%m-%d), commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
# $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), kernel $(uname -r), loopback
# netsem-bench --seconds $seconds --warmup $warmup, median of $reps runs per point (names: one run, a fresh netsemd each)
"
    local started=$SECONDS figure x
    start_netsem
    start_floor
    for figure in "${figures[@]}"; do
      case $figure in
        scaling-clients) sweep "$figure" spread -- "${scaling_clients[@]}" ;;
        queue-length) sweep "$figure" contended --limit 10 -- "${queue_clients[@]}" ;;
        names)
          stop_netsem
          for x in "${names_counts[@]}"; do
            start_netsem
            run_bench "$json/names-$x-netsem-r0.json" netsem --scenario names --names "$x" --seconds 60
            stop_netsem
          done
          ;;
      esac
      tabulate "$figure"
    done
    log "measured in $((SECONDS - started)) s"
  fi

  command -v gnuplot >/dev/null || die "gnuplot is missing (drop --no-install to install gnuplot-nox)"
  for figure in "${figures[@]}"; do
    [[ -s $out/$figure.dat ]] || die "no $out/$figure.dat to plot"
    gnuplot -e "figure='$figure'; dat='$out/$figure.dat'; png='$out/$figure.png'" "$repo/bench/plot.gp"
    log "wrote $out/$figure.png"
  done
}

main "$@"
