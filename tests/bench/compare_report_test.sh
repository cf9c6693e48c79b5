#!/usr/bin/env bash
# bench/compare_report.py on made-up runs (no server, no timing): contended
# against netsemd with OPTION queued off (compare.sh --queued off) is its own
# row, paired with the floor's contended, and the ratios line ends with its
# two figures; without such runs the line keeps the seven figures of issue 5.
# Then the Python client's, TLS's and compare.sh --cluster's rows and ratios,
# and netsem-commit-floor's table.
# Usage: compare_report_test.sh REPO
set -euo pipefail
repo=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

fail() {
  echo "compare_report_test: $*" >&2
  exit 1
}

# run FILE TARGET SCENARIO OPS_PER_S CPU_US_PER_OP QUEUED_ANSWERS
run() {
  printf '{"target":"%s","scenario":"%s","ops_per_s":%s,"latency_us":{"p50":1.0,"p99":2.0},' "$2" "$3" "$4" >"$dir/$1"
  printf '"errors":0,"first_error":"","server_cpu_us_per_op":%s,"server_system_cpu_us_per_op":%s,' "$5" "$5" >>"$dir/$1"
  printf '"queued_answers":"%s"}\n' "$6" >>"$dir/$1"
}

run rep00-contended-netsem.json netsem contended 60000 16 on
run rep00-contended-floor.json floor contended 100000 10 on
run rep00-spread-netsem.json netsem spread 80000 12 on
run rep00-spread-floor.json floor spread 100000 10 on
run rep00-cycle1-netsem.json netsem cycle1 5000 70 on
run rep00-cycle1-floor.json floor cycle1 5000 70 on

report=$(python3 "$repo/bench/compare_report.py" "$dir")
last=$(tail -n 1 <<<"$report")
[[ $last == "ratios: contended_vs_floor=0.60 spread_vs_floor=0.80 cycle1_vs_floor=1.00 cpu_vs_floor=0.62 contended_vs_redis=n/a spread_vs_redis=n/a cpu_vs_redis=n/a" ]] ||
  fail "without queued-off runs: $last"

run rep00-contended-netsemqoff.json netsem contended 90000 12.5 off
report=$(python3 "$repo/bench/compare_report.py" "$dir")
last=$(tail -n 1 <<<"$report")
[[ $last == *" cpu_vs_redis=n/a contended_qoff_vs_floor=0.90 cpu_qoff_vs_floor=0.80" ]] || fail "with them: $last"
[[ $last == "ratios: contended_vs_floor=0.60 "* ]] || fail "queued-off runs mixed into contended: $last"
grep -qF '| contended, queued off | netsemd | 1 | 90,000 |' <<<"$report" || fail "no queued-off row: $report"
grep -qF '| contended, queued off throughput, netsemd / floor | 0.90 |' <<<"$report" || fail "no paired row: $report"
# The Python client's runs (bench/python_bench.py, target python, no
# queued_answers): rows of their own, paired with netsem-bench's on the same
# netsemd, and no change to the ratios line.
printf '{"target":"python","scenario":"cycle1","ops_per_s":2500,"latency_us":{"p50":1.0,"p99":2.0},"errors":0,' >"$dir/rep00-cycle1-python.json"
printf '"first_error":"","server_cpu_us_per_op":70,"server_system_cpu_us_per_op":null,"queued_answers":null}\n' >>"$dir/rep00-cycle1-python.json"
report=$(python3 "$repo/bench/compare_report.py" "$dir")
[[ $(tail -n 1 <<<"$report") == "$last" ]] || fail "the Python client's runs changed the ratios line: $(tail -n 1 <<<"$report")"
grep -qF '| cycle1 | Python client | 1 | 2,500 |' <<<"$report" || fail "no Python client row: $report"
grep -qF '| cycle1 throughput, Python client / netsem-bench | 0.50 |' <<<"$report" || fail "no Python pairing: $report"
# netsemd's TLS port (netsem-bench --tls-port: target netsem, "tls": true):
# rows of their own, paired with plain TCP, and two more ratios at the end.
printf '{"target":"netsem","scenario":"cycle1","ops_per_s":4000,"latency_us":{"p50":1.0,"p99":2.0},"errors":0,' >"$dir/rep00-cycle1-netsemtls.json"
printf '"first_error":"","server_cpu_us_per_op":84,"server_system_cpu_us_per_op":20,"queued_answers":"on","tls":true}\n' >>"$dir/rep00-cycle1-netsemtls.json"
report=$(python3 "$repo/bench/compare_report.py" "$dir")
tls_last=$(tail -n 1 <<<"$report")
[[ $tls_last == "$last cycle1_tls_vs_plain=0.80 contended_tls_vs_plain=n/a" ]] || fail "with TLS runs: $tls_last"
grep -qF '| cycle1 | netsemd over TLS | 1 | 4,000 |' <<<"$report" || fail "no TLS row: $report"
grep -qF '| cycle1 throughput, TLS / plain TCP | 0.80 |' <<<"$report" || fail "no TLS pairing: $report"
grep -qF '| cycle1 server CPU per op, TLS / plain TCP | 1.20 |' <<<"$report" || fail "no TLS CPU pairing: $report"
# compare.sh --cluster: the single netsemd with fsync always and the cluster
# are netsem-bench runs (target netsem) told apart by their file names, etcd's
# recipe is target etcd: rows of their own, the cluster paired with both, and
# two more ratios at the end; then durable (the single server and the
# cluster only), paired and one ratio more.
cluster_run() {
  printf '{"target":"%s","scenario":"%s","ops_per_s":%s,"latency_us":{"p50":1.0,"p99":%s},"errors":0,' "$2" "${5:-contended}" "$3" "$4" >"$dir/$1"
  printf '"first_error":"","server_cpu_us_per_op":30,"server_system_cpu_us_per_op":10,"queued_answers":"on"}\n' >>"$dir/$1"
}
cluster_run rep00-contended-netsemsync.json netsem 20000 900
cluster_run rep00-contended-cluster.json netsem 8000 12000
cluster_run rep00-contended-etcd.json etcd 200 400000
report=$(python3 "$repo/bench/compare_report.py" "$dir")
cluster_last=$(tail -n 1 <<<"$report")
[[ $cluster_last == "$tls_last cluster_vs_single=0.40 cluster_vs_etcd=40.00" ]] || fail "with cluster runs: $cluster_last"
[[ $cluster_last == "ratios: contended_vs_floor=0.60 "* ]] || fail "cluster runs mixed into netsemd's contended: $cluster_last"
grep -qF '| contended | netsemd, fsync always | 1 | 20,000 | 1.0 | 900 |' <<<"$report" || fail "no fsync-always row: $report"
grep -qF '| contended | 3 netsemd (Raft), on the leader | 1 | 8,000 | 1.0 | 12,000 |' <<<"$report" || fail "no cluster row: $report"
grep -qF '| contended | etcd recipe, 3 members | 1 | 200 | 1.0 | 400,000 |' <<<"$report" || fail "no etcd row: $report"
grep -qF '| contended throughput, 3 netsemd / netsemd, fsync always | 0.40 |' <<<"$report" || fail "no cluster pairing: $report"
grep -qF '| contended throughput, 3 netsemd / etcd recipe, 3 members | 40.00 |' <<<"$report" || fail "no etcd pairing: $report"
cluster_run rep00-durable-netsemsync.json netsem 3000 30000 durable
cluster_run rep00-durable-cluster.json netsem 6000 25000 durable
report=$(python3 "$repo/bench/compare_report.py" "$dir")
durable_last=$(tail -n 1 <<<"$report")
[[ $durable_last == "$cluster_last cluster_vs_single_durable=2.00" ]] || fail "with durable runs: $durable_last"
grep -qF '| durable | netsemd, fsync always | 1 | 3,000 | 1.0 | 30,000 |' <<<"$report" || fail "no durable row: $report"
grep -qF '| durable | 3 netsemd (Raft), on the leader | 1 | 6,000 | 1.0 | 25,000 |' <<<"$report" || fail "no durable cluster row: $report"
grep -qF '| durable throughput, 3 netsemd / netsemd, fsync always | 2.00 |' <<<"$report" || fail "no durable pairing: $report"
# netsem-commit-floor's JSON (compare.sh --cluster, one per repetition): its
# table, and the disk's ceiling over the single server's contended at the end.
printf '{"ceiling_cycles_per_s":50000.0,"dir":"/x","limit":10,"lone_append_us":{"p50":150.0,"p90":190.0,"p99":400.0},' >"$dir/commitfloor-rep00.json"
printf '"method":"O_DIRECT, Linux AIO with RWF_DSYNC","quorum":2,"quorum_append_us":{"p50":200.0,"p90":260.0,"p99":900.0},' >>"$dir/commitfloor-rep00.json"
printf '"replicas":3,"rounds":1000}\n' >>"$dir/commitfloor-rep00.json"
report=$(python3 "$repo/bench/compare_report.py" "$dir")
floor_last=$(tail -n 1 <<<"$report")
[[ $floor_last == "$durable_last disk_ceiling_vs_single=2.50" ]] || fail "with the commit floor: $floor_last"
grep -qF '| 2 of 3 appends durable, p50 (µs) | 200 | 200 |' <<<"$report" || fail "no commit floor row: $report"
grep -qF "| contended's ceiling: 10 permits / the p50 above (cycles/s) | 50,000 | 50,000 |" <<<"$report" ||
  fail "no ceiling row: $report"
echo "compare_report_test: ok"
