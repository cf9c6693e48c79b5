#!/usr/bin/env bash
# bench/compare.sh: netsemd next to the floor and Redis, run interleaved, with
# medians and the `ratios:` line of issue 5.
#
# It installs what it needs (scripts/install-deps.sh, which brings redis-server
# and python3, through apt-get, with sudo when not root), builds the
# Release netsemd and netsem-bench (build-release/), and starts three servers
# on free loopback ports, each once for the whole run: netsemd from a
# configuration it writes (bench.contended defined with limit 10), the floor
# (`netsem-bench --serve-floor`) and `redis-server` without persistence. Each
# repetition runs cycle1, contended, spread and pipelined against every
# system, in an order that rotates with the repetition (netsem, floor, redis;
# then floor, redis, netsem; ...), so the drift of a shared machine falls on
# all of them alike. cycle1 and contended also run through the Python client
# (bench/python_bench.py, clients/python) against the same netsemd, in the
# rotation, as the system "python". netsem-bench reads each server's CPU
# time through --server-pid. netsemd alone then runs ace, and sessions and names (the
# memory figures) each on a fresh netsemd. bench/compare_report.py prints a
# markdown table of medians with min–max, and the last line of stdout is
#   ratios: contended_vs_floor=A spread_vs_floor=B cycle1_vs_floor=C cpu_vs_floor=D contended_vs_redis=E spread_vs_redis=F cpu_vs_redis=G cycle1_tls_vs_plain=J contended_tls_vs_plain=K
# (cycle1 and contended also run over netsemd's TLS port, the system
# "netsemtls", with a certificate made by openssl for the run: the last two
# ratios are TLS's cycles/s over plain TCP's.)
# Progress goes to stderr. Servers and temporary files go on every exit.
#
# Usage: bench/compare.sh [--quick] [--reps N] [--seconds S] [--warmup S]
#                         [--out DIR] [--no-install] [--no-build] [--build-dir DIR]
#                         [--queued off] [--cluster]
#   (default)       5 repetitions of 5 s (1 s warm-up); 10,000 sessions and
#                   1,000,000 names: about 7 minutes on 2 cores
#   --quick         3 repetitions of 2 s (0.5 s warm-up); 2,000 sessions and
#                   100,000 names: about 2 minutes
#   --out DIR       keep every run's JSON, table.md (the report) and meta.txt
#   --no-install    do not run apt-get (the packages are there)
#   --no-build      use the binaries already in the build directory
#   --build-dir DIR the Release build directory [default: build-release]
#   --queued off    also run contended against netsemd with `OPTION queued off`
#                   (protocol 1.1: no QUEUED line) in every repetition, in the
#                   rotation; the report shows both, and the ratios line ends
#                   with contended_qoff_vs_floor=H cpu_qoff_vs_floor=I
#   --cluster       issue 16's target: three more systems in cycle1's and
#                   contended's rotation, all with fsync on every write:
#                   "netsemsync", a single netsemd with `fsync = always`;
#                   "cluster", three netsemd on 127.0.0.1-3 with `fsync =
#                   always` and a [cluster] section (libraft, which fsyncs every
#                   append), netsem-bench's clients on the leader (as clients
#                   that follow the leader connect), CPU summed over the three
#                   (--server-pid P1,P2,P3); and "etcd", a three-member etcd
#                   (Debian's etcd-server, installed only for --cluster) on
#                   127.0.0.1-3 running etcd's semaphore recipe
#                   (bench/etcd_bench.py: a leased key per holder, FIFO by
#                   create revision, over the v3 JSON gateway), clients on its
#                   leader. The report shows their acquire p99 beside the
#                   others', and the ratios line ends with
#                   cluster_vs_single=L cluster_vs_etcd=M (contended cycles/s
#                   of the cluster over the fsync-always single server's and
#                   over etcd's; issue 16's targets: at least 0.3 and 20).
#                   Also the scenario durable (contended's load as WAIT and
#                   POST of a created semaphore, which the single server
#                   journals and syncs, where it journals none of
#                   contended's grants) on netsemsync and the cluster, and
#                   cluster_vs_single_durable=N at the end of the ratios.
#                   After each repetition, netsem-commit-floor measures the
#                   disk's floor under a commit on the cluster's file system
#                   (2 of 3 synced appends at once, as raft_uv writes them):
#                   the report shows the ceiling it sets on contended (10
#                   permits / that time), and the ratios line ends with
#                   disk_ceiling_vs_single=P (that ceiling over the single
#                   server's contended cycles/s)
#
# bench/plot.sh sources this file for its helpers (main runs only when this
# file is executed).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log_prefix=compare
build_dir=$repo/build-release
do_install=1
do_build=1
apt_updated=0
work=
NETSEMD=
BENCH=
COMMIT_FLOOR=
PYTHON=
NETSEM_PID='' NETSEM_PORT='' NETSEM_TLS_PORT='' NETSEM_DIR='' netsem_generation=0
FLOOR_PID='' FLOOR_PORT=''
REDIS_PID='' REDIS_PORT=''
SYNC_PID='' SYNC_PORT=''
CLUSTER_PIDS=() CLUSTER_PORTS=() CLUSTER_LEADER=''
ETCD_PIDS=() ETCD_PORTS=() ETCD_LEADER=''

log() { printf '%s: %s\n' "$log_prefix" "$*" >&2; }
die() {
  log "$*"
  exit 1
}

# Installs the Debian packages given that are not installed yet, as
# scripts/install-deps.sh does.
ensure_packages() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local sudo_cmd=()
  [[ "$(id -u)" -eq 0 ]] || sudo_cmd=(sudo)
  log "installing ${missing[*]}"
  if [[ $apt_updated -eq 0 ]]; then
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    apt_updated=1
  fi
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The project's dependencies, the extra packages given, then the Release
# build of netsemd and netsem-bench. Sets NETSEMD, BENCH and PYTHON.
# shellcheck disable=SC2120  # plot.sh passes gnuplot-nox
install_and_build() {
  if [[ $do_install -eq 1 ]]; then
    "$repo/scripts/install-deps.sh" >&2
    ensure_packages "$@"
  fi
  if [[ $do_build -eq 1 ]]; then
    log "building netsemd and netsem-bench (Release) in $build_dir"
    cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
    cmake --build "$build_dir" --target netsemd netsem-bench netsem-commit-floor >&2
  fi
  NETSEMD=$build_dir/src/server/netsemd
  BENCH=$build_dir/bench/netsem-bench
  COMMIT_FLOOR=$build_dir/bench/netsem-commit-floor
  [[ -x $NETSEMD && -x $BENCH ]] || die "no netsemd or netsem-bench in $build_dir (build it, or drop --no-build)"
  if [[ -x /usr/bin/python3 ]]; then
    PYTHON=/usr/bin/python3
  else
    PYTHON=$(command -v python3) || die "python3 is missing (drop --no-install to install it)"
  fi
}

# The temporary directory, the descriptor limit (sessions holds thousands of
# connections, netsemd as many) and the clean-up on every exit.
setup_workspace() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/netsem-$log_prefix.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM HUP
  local hard
  hard=$(ulimit -Hn)
  ulimit -n "$hard" 2>/dev/null || true
}

# Stops one process we started: SIGTERM, then SIGKILL after 5 s.
stop_pid() {
  local pid=$1 i
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  stop_pid "$NETSEM_PID"
  stop_pid "$FLOOR_PID"
  stop_pid "$REDIS_PID"
  stop_pid "$SYNC_PID"
  local pid
  for pid in "${CLUSTER_PIDS[@]}" "${ETCD_PIDS[@]}"; do stop_pid "$pid"; done
  [[ -n $work ]] && rm -rf "$work"
  exit "$status"
}

# Waits until the log of process PID shows the extended regex PATTERN, and
# prints the first match; fails when the process ends first or after 15 s.
wait_for_log() {
  local pid=$1 file=$2 pattern=$3 what=$4 i match
  for ((i = 0; i < 150; i++)); do
    if match=$(grep -m1 -oE "$pattern" "$file" 2>/dev/null); then
      printf '%s\n' "$match"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$what did not start:"
      tail -n 20 "$file" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  log "$what did not start in 15 s:"
  tail -n 20 "$file" >&2 || true
  return 1
}

# A loopback port free right now (for redis-server, which cannot be told to
# pick one; netsemd and the floor listen on port 0 and say which they got).
free_port() {
  "$PYTHON" -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' \
    "${1:-127.0.0.1}"
}

# A CA and a certificate for 127.0.0.1 in $work/tls, for netsemd's TLS port
# (the system "netsemtls"), made once with the openssl command.
make_tls_files() {
  [[ -s $work/tls/server.pem ]] && return 0
  mkdir -p "$work/tls"
  local dir=$work/tls
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -keyout "$dir/ca.key" \
    -out "$dir/ca.pem" -subj "/CN=bench CA" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/server.key" -out "$dir/server.csr" \
    -subj "/CN=127.0.0.1" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\n' >"$dir/san.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
    -extfile "$dir/san.ext" -out "$dir/server.pem" 2>/dev/null
}

# netsemd on a fresh data directory and a port of its own choosing, with its
# TLS port on too (a port of its own choosing).
start_netsem() {
  netsem_generation=$((netsem_generation + 1))
  NETSEM_DIR=$work/netsemd-$netsem_generation
  mkdir -p "$NETSEM_DIR/data"
  make_tls_files
  cat >"$NETSEM_DIR/netsem.ini" <<EOF
[server]
bind_address = 127.0.0.1
bind_port = 0
stats_dir = $NETSEM_DIR/data
data_dir = $NETSEM_DIR/data
log_level = info
max_connections = 20000
max_semaphores = 2000000
tls_port = 0
tls_cert = $work/tls/server.pem
tls_key = $work/tls/server.key

[semaphores]
bench.contended = 10
EOF
  "$NETSEMD" --config "$NETSEM_DIR/netsem.ini" 2>"$NETSEM_DIR/log" &
  NETSEM_PID=$!
  local line
  line=$(wait_for_log "$NETSEM_PID" "$NETSEM_DIR/log" 'listening on 127\.0\.0\.1:[0-9]+' netsemd) || exit 1
  NETSEM_PORT=${line##*:}
  line=$(grep -oE 'TLS on 127\.0\.0\.1:[0-9]+' "$NETSEM_DIR/log" | head -1) || die "netsemd logged no TLS port"
  NETSEM_TLS_PORT=${line##*:}
  log "netsemd (pid $NETSEM_PID) on 127.0.0.1:$NETSEM_PORT, TLS on $NETSEM_TLS_PORT"
}

stop_netsem() {
  stop_pid "$NETSEM_PID"
  NETSEM_PID=
}

# The single netsemd of --cluster's comparison: start_netsem's configuration
# without TLS and with `fsync = always` (every journal write synced before
# its answer): the system "netsemsync".
start_netsem_sync() {
  local dir=$work/netsemd-sync
  mkdir -p "$dir/data"
  cat >"$dir/netsem.ini" <<EOF
[server]
bind_address = 127.0.0.1
bind_port = 0
stats_dir = $dir/data
data_dir = $dir/data
log_level = info
max_connections = 20000
fsync = always
http_enabled = off

[semaphores]
bench.contended = 10
EOF
  "$NETSEMD" --config "$dir/netsem.ini" 2>"$dir/log" &
  SYNC_PID=$!
  local line
  line=$(wait_for_log "$SYNC_PID" "$dir/log" 'listening on 127\.0\.0\.1:[0-9]+' "netsemd (fsync always)") || exit 1
  SYNC_PORT=${line##*:}
  log "netsemd with fsync = always (pid $SYNC_PID) on 127.0.0.1:$SYNC_PORT"
}

# Three netsemd on 127.0.0.1-3 with a [cluster] section (docs/replication.md,
# "Configuration") and `fsync = always`, each on a data directory of its own
# under $work (on the disk that holds TMPDIR: a tmpfs would make fsync
# free); waits for a leader and sets CLUSTER_PIDS, CLUSTER_PORTS (client
# ports, index 0 = server 1) and CLUSTER_LEADER (0-based). The ports are
# picked free but only bound by the servers later, so another process (a
# test running beside compare_smoke_test) can take one in between: a start
# that fails with "Address already in use" is tried again, on new ports, at
# most three times in all.
start_cluster() {
  local try pid
  for try in 1 2 3; do
    try_start_cluster && return 0
    grep -qs 'Address already in use' "$work"/cluster/log[123] && [[ $try -lt 3 ]] || exit 1
    log "a port was taken before the cluster bound it: starting it again on new ports"
    for pid in "${CLUSTER_PIDS[@]}"; do stop_pid "$pid"; done
    CLUSTER_PIDS=()
    rm -rf "$work/cluster"
  done
}

# One try of start_cluster: 1 if a server did not start.
try_start_cluster() {
  local i j n raft_ports=() dir=$work/cluster
  mkdir -p "$dir"
  for i in 0 1 2; do
    CLUSTER_PORTS[i]=$(free_port "127.0.0.$((i + 1))")
    raft_ports[i]=$(free_port "127.0.0.$((i + 1))")
  done
  # One secret, each server's own copy readable by its owner only.
  (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$dir/secret.1" && echo >>"$dir/secret.1")
  for n in 2 3; do (umask 077 && cp "$dir/secret.1" "$dir/secret.$n"); done
  for i in 0 1 2; do
    n=$((i + 1))
    mkdir -p "$dir/data$n"
    {
      cat <<EOF
[server]
bind_address = 127.0.0.$n
bind_port = ${CLUSTER_PORTS[i]}
stats_dir = $dir/data$n
data_dir = $dir/data$n
log_level = info
max_connections = 20000
fsync = always
http_enabled = off

[semaphores]
bench.contended = 10

[cluster]
id = $n
secret_file = $dir/secret.$n
election_timeout_ms = 1000
heartbeat_timeout_ms = 100
EOF
      for j in 0 1 2; do
        echo "server.$((j + 1)) = 127.0.0.$((j + 1)):${raft_ports[j]} 127.0.0.$((j + 1)):${CLUSTER_PORTS[j]}"
      done
    } >"$dir/netsem$n.ini"
    "$NETSEMD" --config "$dir/netsem$n.ini" 2>"$dir/log$n" &
    CLUSTER_PIDS[i]=$!
  done
  for n in 1 2 3; do
    wait_for_log "${CLUSTER_PIDS[n - 1]}" "$dir/log$n" 'listening on 127\.0\.0\.[0-9]+:[0-9]+' \
      "netsemd $n of the cluster" >/dev/null || return 1
  done
  local line leader
  line=$(wait_for_log "${CLUSTER_PIDS[0]}" "$dir/log1" 'cluster: [a-z]+ in term [0-9]+, leader [1-9][0-9]*' \
    "the cluster's leader") || exit 1
  leader=${line##* }
  [[ $leader =~ ^[123]$ ]] || die "the cluster elected an unknown leader ($line)"
  CLUSTER_LEADER=$((leader - 1))
  log "3 netsemd (pids ${CLUSTER_PIDS[*]}) on 127.0.0.1-3, ports ${CLUSTER_PORTS[*]}; leader: server $leader"
}

# A three-member etcd cluster on 127.0.0.1-3 (etcd's defaults: every write
# fsynced in its WAL), each with a data directory under $work; waits until
# every member serves and sets ETCD_PIDS, ETCD_PORTS (client ports) and
# ETCD_LEADER (0-based, from /v3/maintenance/status).
start_etcd() {
  local i n peers=() initial='' dir=$work/etcd
  mkdir -p "$dir"
  for i in 0 1 2; do
    ETCD_PORTS[i]=$(free_port "127.0.0.$((i + 1))")
    peers[i]=$(free_port "127.0.0.$((i + 1))")
    initial+="${initial:+,}e$((i + 1))=http://127.0.0.$((i + 1)):${peers[i]}"
  done
  for i in 0 1 2; do
    n=$((i + 1))
    etcd --name "e$n" --data-dir "$dir/data$n" \
      --listen-client-urls "http://127.0.0.$n:${ETCD_PORTS[i]}" \
      --advertise-client-urls "http://127.0.0.$n:${ETCD_PORTS[i]}" \
      --listen-peer-urls "http://127.0.0.$n:${peers[i]}" --initial-advertise-peer-urls "http://127.0.0.$n:${peers[i]}" \
      --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token netsem-bench \
      >"$dir/log$n" 2>&1 &
    ETCD_PIDS[i]=$!
  done
  for n in 1 2 3; do
    wait_for_log "${ETCD_PIDS[n - 1]}" "$dir/log$n" 'ready to serve client requests' "etcd member $n" >/dev/null ||
      exit 1
  done
  local tries
  for ((tries = 0; tries < 50; tries++)); do
    ETCD_LEADER=$("$PYTHON" -c '
import json, sys, urllib.request
for index, port in enumerate(sys.argv[1:]):
    request = urllib.request.Request(f"http://127.0.0.{index + 1}:{port}/v3/maintenance/status", b"{}")
    status = json.load(urllib.request.urlopen(request, timeout=5))
    if status.get("leader") and status["leader"] == status["header"]["member_id"]:
        print(index)
        break
' "${ETCD_PORTS[@]}" 2>/dev/null || true)
    [[ -n $ETCD_LEADER ]] && break
    sleep 0.2
  done
  [[ -n $ETCD_LEADER ]] || die "the etcd cluster elected no leader"
  log "etcd (pids ${ETCD_PIDS[*]}) on 127.0.0.1-3, client ports ${ETCD_PORTS[*]}; leader: member $((ETCD_LEADER + 1))"
}

start_floor() {
  "$BENCH" --serve-floor --host 127.0.0.1 --port 0 >"$work/floor.log" 2>&1 &
  FLOOR_PID=$!
  local line
  line=$(wait_for_log "$FLOOR_PID" "$work/floor.log" 'port [0-9]+' "the floor") || exit 1
  FLOOR_PORT=${line##* }
  log "the floor (pid $FLOOR_PID) on 127.0.0.1:$FLOOR_PORT"
}

start_redis() {
  local try
  mkdir -p "$work/redis"
  for try in 1 2 3; do
    REDIS_PORT=$(free_port)
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
      --dir "$work/redis" --logfile '' >"$work/redis.log" 2>&1 &
    REDIS_PID=$!
    if wait_for_log "$REDIS_PID" "$work/redis.log" 'Ready to accept connections' redis-server >/dev/null; then
      log "redis-server (pid $REDIS_PID) on 127.0.0.1:$REDIS_PORT"
      return 0
    fi
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
    log "redis-server failed on port $REDIS_PORT (try $try of 3)"
  done
  die "redis-server would not start"
}

# netsem-bench's flags that point it at SYSTEM's server: sets target_args.
target_args=()
set_target_args() {
  local pid port
  local extra=() target=$1
  case $1 in
    netsem) pid=$NETSEM_PID port=$NETSEM_PORT ;;
    netsemtls) pid=$NETSEM_PID port=$NETSEM_PORT target=netsem extra=(--tls-port "$NETSEM_TLS_PORT" --tls-ca "$work/tls/ca.pem") ;;
    floor) pid=$FLOOR_PID port=$FLOOR_PORT ;;
    redis) pid=$REDIS_PID port=$REDIS_PORT ;;
    netsemsync) pid=$SYNC_PID port=$SYNC_PORT target=netsem ;;
    cluster)
      # The leader first: its RSS is the one netsem-bench reads.
      local l=$CLUSTER_LEADER p
      pid=${CLUSTER_PIDS[l]} port=${CLUSTER_PORTS[l]} target=netsem
      extra=(--host "127.0.0.$((l + 1))")
      for p in "${CLUSTER_PIDS[@]}"; do
        kill -0 "$p" 2>/dev/null || die "netsemd $p of the cluster is not running"
        [[ $p == "${CLUSTER_PIDS[l]}" ]] || pid+=",$p"
      done
      ;;
    *) die "unknown system $1" ;;
  esac
  if [[ -z $pid ]] || ! kill -0 "${pid%%,*}" 2>/dev/null; then
    die "the $1 server (pid ${pid:-none}) is not running"
  fi
  target_args=(--target "$target" --port "$port" --server-pid "$pid" "${extra[@]}")
}

# run_bench FILE SYSTEM ARGS...: one netsem-bench --json run against SYSTEM,
# its JSON kept in FILE. A run with errors is kept (the report counts them);
# a run that printed nothing stops the script.
run_bench() {
  local file=$1 system=$2 status=0
  shift 2
  set_target_args "$system"
  "$BENCH" "${target_args[@]}" --json "$@" >"$file.part" 2>"$file.err" || status=$?
  if [[ ! -s $file.part ]]; then
    cat "$file.err" >&2
    die "netsem-bench ${target_args[*]} $* failed (exit $status)"
  fi
  mv "$file.part" "$file"
  [[ -s $file.err ]] || rm -f "$file.err"
  local ops
  ops=$(grep -oE '"ops_per_s":[0-9.]+' "$file" | cut -d: -f2)
  if [[ $status -ne 0 ]]; then
    log "$(basename "$file" .json): ${ops} ops/s, with errors: $(grep -oE '"first_error":"[^"]*"' "$file")"
  else
    log "$(basename "$file" .json): ${ops} ops/s"
  fi
}

# run_python FILE SCENARIO ARGS...: one bench/python_bench.py run (the
# scenario through the Python client, clients/python) against netsemd, its
# JSON kept in FILE like run_bench's.
run_python() {
  local file=$1 status=0
  shift
  set_target_args netsem
  "$PYTHON" "$repo/bench/python_bench.py" --port "$NETSEM_PORT" --server-pid "$NETSEM_PID" "$@" \
    >"$file.part" 2>"$file.err" || status=$?
  if [[ ! -s $file.part ]]; then
    cat "$file.err" >&2
    die "bench/python_bench.py $* failed (exit $status)"
  fi
  mv "$file.part" "$file"
  [[ -s $file.err ]] || rm -f "$file.err"
  log "$(basename "$file" .json): $(grep -oE '"ops_per_s":[0-9.]+' "$file" | cut -d: -f2) ops/s$([[ $status -eq 0 ]] || echo ', with errors')"
}

# run_etcd FILE ARGS...: one bench/etcd_bench.py run (etcd's semaphore
# recipe) against the etcd cluster's leader, its JSON kept in FILE like
# run_bench's; the CPU is the three members'.
run_etcd() {
  local file=$1 status=0 p pids=''
  shift
  for p in "${ETCD_PIDS[@]}"; do
    kill -0 "$p" 2>/dev/null || die "etcd member $p is not running"
    pids+="${pids:+,}$p"
  done
  "$PYTHON" "$repo/bench/etcd_bench.py" --endpoint "127.0.0.$((ETCD_LEADER + 1)):${ETCD_PORTS[ETCD_LEADER]}" \
    --server-pid "$pids" "$@" >"$file.part" 2>"$file.err" || status=$?
  if [[ ! -s $file.part ]]; then
    cat "$file.err" >&2
    die "bench/etcd_bench.py $* failed (exit $status)"
  fi
  mv "$file.part" "$file"
  [[ -s $file.err ]] || rm -f "$file.err"
  log "$(basename "$file" .json): $(grep -oE '"ops_per_s":[0-9.]+' "$file" | cut -d: -f2) ops/s$([[ $status -eq 0 ]] || echo ', with errors')"
}

# run_commit_floor FILE: the disk's floor under the cluster's commit
# (bench/commit_floor.cc: 2 of 3 synced appends at once, as raft_uv writes
# them) on the cluster's own file system, with contended's limit of 10; its
# JSON kept in FILE. Skipped with a warning when the probe is not built.
run_commit_floor() {
  local file=$1
  if [[ ! -x $COMMIT_FLOOR ]]; then
    log "warning: no $COMMIT_FLOOR: the disk's ceiling is left out (build netsem-commit-floor)"
    return 0
  fi
  "$COMMIT_FLOOR" --dir "$work/cluster" --rounds "$commit_floor_rounds" --limit 10 >"$file.part" ||
    die "netsem-commit-floor failed"
  mv "$file.part" "$file"
  log "$(basename "$file" .json): the disk's ceiling $(grep -oE '"ceiling_cycles_per_s":[0-9.]+' "$file" | cut -d: -f2) cycles/s"
}

# Whether this netsem-bench has the Redis target yet.
bench_has_redis() {
  "$BENCH" --target redis --help >/dev/null 2>&1
}

# The options compare.sh and plot.sh share. parse_common_option takes the
# option at $1 (and its value), setting the caller's reps, seconds, warmup or
# out, or the globals, and option_words to the number of words it used; any
# other option is an error.
parse_common_option() {
  option_words=2
  case $1 in
    --reps) reps=${2:?--reps needs a number} ;;
    --seconds) seconds=${2:?--seconds needs a number} ;;
    --warmup) warmup=${2:?--warmup needs a number} ;;
    --out) out=${2:?--out needs a directory} ;;
    --build-dir) build_dir=${2:?--build-dir needs a directory} ;;
    --no-install) option_words=1 do_install=0 ;;
    --no-build) option_words=1 do_build=0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
}

check_common_options() {
  [[ $reps =~ ^[1-9][0-9]*$ ]] || die "--reps must be a positive integer"
  [[ $seconds =~ ^[0-9]+(\.[0-9]+)?$ && $warmup =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--seconds and --warmup take seconds"
  [[ $build_dir = /* ]] || build_dir=$PWD/$build_dir
}

# The header comment of the script being run, as its --help.
print_usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

main() {
  local quick=0 reps='' seconds='' warmup='' out='' option_words queued=on cluster=0
  while [[ $# -gt 0 ]]; do
    case $1 in
      --quick) option_words=1 quick=1 ;;
      --cluster) option_words=1 cluster=1 ;;
      --queued)
        queued=${2:?--queued needs on or off}
        [[ $queued == on || $queued == off ]] || die "--queued takes on or off"
        option_words=2
        ;;
      -h | --help)
        print_usage
        return 0
        ;;
      *) parse_common_option "$@" ;;
    esac
    shift "$option_words"
  done
  local sessions names memory_seconds commit_floor_rounds
  if [[ $quick -eq 1 ]]; then
    : "${reps:=3}" "${seconds:=2}" "${warmup:=0.5}"
    sessions=2000 names=100000 memory_seconds=10 commit_floor_rounds=300
  else
    : "${reps:=5}" "${seconds:=5}" "${warmup:=1}"
    sessions=10000 names=1000000 memory_seconds=30 commit_floor_rounds=1000
  fi
  check_common_options
  if [[ -n $out ]]; then
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
  fi

  if [[ $cluster -eq 1 ]]; then install_and_build etcd-server; else install_and_build; fi
  if [[ $cluster -eq 1 ]] && ! command -v etcd >/dev/null; then
    die "--cluster needs etcd (Debian's etcd-server; drop --no-install to install it)"
  fi
  setup_workspace
  local runs=${out:-$work/runs}
  mkdir -p "$runs"
  rm -f "$runs"/rep[0-9]*-*.json "$runs"/once-*.json "$runs"/commitfloor-rep*.json

  local systems=(netsem floor)
  if ! command -v redis-server >/dev/null; then
    log "warning: no redis-server: Redis is left out (its ratios print n/a)"
  elif ! bench_has_redis; then
    log "warning: this netsem-bench has no --target redis yet: Redis is left out (its ratios print n/a)"
  else
    systems+=(redis)
  fi
  local hard
  hard=$(ulimit -n)
  if [[ $hard != unlimited && $hard -lt $((sessions + 200)) ]]; then
    sessions=$((hard - 200))
    log "descriptor limit $hard: sessions reduced to $sessions"
  fi

  start_netsem
  start_floor
  if [[ " ${systems[*]} " == *" redis "* ]]; then start_redis; fi
  if [[ $cluster -eq 1 ]]; then
    start_netsem_sync
    start_cluster
    start_etcd
  fi

  local started=$SECONDS rep scenario i n=${#systems[@]}
  log "${systems[*]}: $reps repetitions of ${seconds} s (${warmup} s warm-up), the order rotating"
  local scenarios=(cycle1 contended spread pipelined)
  # --cluster: durable (WAIT and POST of a created semaphore) on the
  # fsync-always single server and the cluster only.
  [[ $cluster -eq 1 ]] && scenarios=(cycle1 contended durable spread pipelined)
  for ((rep = 0; rep < reps; rep++)); do
    for scenario in "${scenarios[@]}"; do
      # contended with --queued off: netsemd once more, a fourth system in
      # the rotation (netsemqoff in the file names).
      local rotation=("${systems[@]}")
      [[ $scenario == contended && $queued == off ]] && rotation=(netsem netsemqoff "${systems[@]:1}")
      # cycle1 and contended also through the Python client, and over
      # netsemd's TLS port (netsemtls), against the same netsemd.
      [[ $scenario == cycle1 || $scenario == contended ]] && rotation+=(python netsemtls)
      # --cluster: the fsync-always single server, the cluster and etcd.
      if [[ $cluster -eq 1 && ($scenario == cycle1 || $scenario == contended) ]]; then
        rotation+=(netsemsync cluster etcd)
      fi
      [[ $scenario == durable ]] && rotation=(netsemsync cluster)
      local m=${#rotation[@]}
      for ((i = 0; i < m; i++)); do
        local system=${rotation[(i + rep) % m]} extra=()
        local file=$runs/$(printf 'rep%02d' "$rep")-$scenario-$system.json
        if [[ $system == python ]]; then
          run_python "$file" --scenario "$scenario" --seconds "$seconds" --warmup "$warmup"
          continue
        fi
        if [[ $system == etcd ]]; then
          run_etcd "$file" --scenario "$scenario" --seconds "$seconds" --warmup "$warmup"
          continue
        fi
        [[ $system == netsemqoff ]] && system=netsem extra=(--queued off)
        run_bench "$file" "$system" --scenario "$scenario" --seconds "$seconds" --warmup "$warmup" "${extra[@]}"
      done
    done
    if [[ $cluster -eq 1 ]]; then run_commit_floor "$runs/$(printf 'commitfloor-rep%02d' "$rep").json"; fi
  done

  # netsemd alone: ace on the same server; the memory figures each on a
  # fresh one, so that their RSS before is a server's at rest.
  run_bench "$runs/once-ace-netsem.json" netsem --scenario ace --seconds "$seconds" --warmup "$warmup"
  stop_netsem
  start_netsem
  run_bench "$runs/once-sessions-netsem.json" netsem --scenario sessions --clients "$sessions" \
    --seconds "$memory_seconds"
  stop_netsem
  start_netsem
  run_bench "$runs/once-names-netsem.json" netsem --scenario names --names "$names" --seconds "$memory_seconds"
  stop_netsem

  local elapsed=$((SECONDS - started))
  log "measured in ${elapsed} s"
  if [[ -n $out ]]; then
    {
      echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
      echo "commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$repo" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
      echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
      echo "load average before the report: $(cut -d' ' -f1-3 /proc/loadavg)"
      if [[ $cluster -eq 1 ]]; then
        echo "cluster: netsemd with fsync = always; 3 netsemd (leader: server $((CLUSTER_LEADER + 1)));" \
          "3 etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}') (leader: member $((ETCD_LEADER + 1)));" \
          "in cycle1, contended and durable (etcd: not durable); data on $(df --output=fstype "$work" | tail -1)"
      fi
      echo "systems: ${systems[*]}$([[ $queued == off ]] && echo ', and netsemd with OPTION queued off in contended'); the Python client and the TLS port in cycle1 and contended; $reps repetitions of $seconds s ($warmup s warm-up); sessions $sessions; names $names"
      echo "measured in ${elapsed} s"
    } >"$out/meta.txt"
  fi

  {
    local names_text="netsemd and the floor" plural=s
    [[ $n -eq 3 ]] && names_text="netsemd, the floor and Redis"
    [[ $reps -eq 1 ]] && plural=
    echo "$names_text (and cycle1 and contended through the Python client): $reps repetition$plural of $seconds s" \
      "($warmup s warm-up), the order of the systems rotating each repetition; medians (min–max) over the repetitions."
    echo
    "$PYTHON" "$repo/bench/compare_report.py" "$runs"
  } | if [[ -n $out ]]; then tee "$out/table.md"; else cat; fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
