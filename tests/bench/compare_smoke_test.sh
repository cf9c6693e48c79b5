#!/usr/bin/env bash
# bench/compare.sh end to end, as small as it goes (one repetition of 0.3 s,
# the quick memory scenarios), with the binaries of the test build: the
# three servers start and stop, every scenario runs (contended against
# netsemd also with --queued off; cycle1 and contended also through the
# Python client, and with --cluster against a netsemd with fsync always,
# three netsemd on the replicated log and three etcd members), the report
# is kept under --out, and the last line is the `ratios:` line of issue 5
# with its seven figures, the two of --queued off, TLS's two, the
# cluster's three and the disk's ceiling (netsem-commit-floor). Says
# nothing of the figures' values: a benchmark is never a timed test.
# Usage: compare_smoke_test.sh REPO BUILD_DIR
set -euo pipefail
repo=$1
build=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

fail() {
  echo "compare_smoke_test: $*" >&2
  echo "--- compare.sh stderr:" >&2
  cat "$out/stderr" >&2
  exit 1
}

bash "$repo/bench/compare.sh" --quick --reps 1 --seconds 0.3 --warmup 0.1 --no-install --no-build \
  --build-dir "$build" --out "$out/report" --queued off --cluster >"$out/stdout" 2>"$out/stderr" || fail "compare.sh exited $?"

last=$(tail -n 1 "$out/stdout")
figure='=[0-9]+\.[0-9]{2}'
pattern="^ratios: contended_vs_floor$figure spread_vs_floor$figure cycle1_vs_floor$figure cpu_vs_floor$figure"
pattern+=" contended_vs_redis$figure spread_vs_redis$figure cpu_vs_redis$figure"
pattern+=" contended_qoff_vs_floor$figure cpu_qoff_vs_floor$figure"
pattern+=" cycle1_tls_vs_plain$figure contended_tls_vs_plain$figure"
pattern+=" cluster_vs_single$figure cluster_vs_etcd$figure cluster_vs_single_durable$figure"
pattern+=" disk_ceiling_vs_single$figure\$"
[[ $last =~ $pattern ]] || fail "last line is not the ratios line: $last"
for row in '| contended | netsemd |' '| contended, queued off | netsemd |' '| contended | floor |' '| contended | Redis |' '| ace | netsemd |' \
  '| sessions | netsemd |' '| names | netsemd |' '| cycle1 | Python client |' '| contended | Python client |' \
  '| cycle1 | netsemd over TLS |' '| contended | netsemd over TLS |' '| contended | netsemd, fsync always |' \
  '| contended | 3 netsemd (Raft), on the leader |' '| cycle1 | 3 netsemd (Raft), on the leader |' \
  '| contended | etcd recipe, 3 members |' '| durable | netsemd, fsync always |' \
  '| durable | 3 netsemd (Raft), on the leader |'; do
  grep -qF -- "$row" "$out/stdout" || fail "no table row starting $row"
done
grep -qE '^\| contended, queued off \| netsemd \|.* \| 0 \|$' "$out/stdout" || fail "errors with --queued off"
grep -qE '^\| contended \| Python client \|.* \| 0 \|$' "$out/stdout" || fail "errors through the Python client"
grep -qE '^\| contended \| netsemd over TLS \|.* \| 0 \|$' "$out/stdout" || fail "errors over TLS"
grep -qE '^\| contended \| 3 netsemd \(Raft\), on the leader \|.* \| 0 \|$' "$out/stdout" || fail "errors on the cluster"
grep -qE '^\| contended \| etcd recipe, 3 members \|.* \| 0 \|$' "$out/stdout" || fail "errors with etcd"
grep -qE '^\| durable \| 3 netsemd \(Raft\), on the leader \|.* \| 0 \|$' "$out/stdout" || fail "errors in durable on the cluster"
grep -qE '^\| durable \| netsemd, fsync always \|.* \| 0 \|$' "$out/stdout" || fail "errors in durable on the single server"
grep -qF "| contended's ceiling: 10 permits / the p50 above (cycles/s) |" "$out/stdout" || fail "no disk ceiling"
[[ -s $out/report/table.md && -s $out/report/meta.txt ]] || fail "--out kept no table.md or meta.txt"
echo "compare_smoke_test: $last"
