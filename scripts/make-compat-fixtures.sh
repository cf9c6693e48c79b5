#!/usr/bin/env bash
# make-compat-fixtures.sh COMMIT OUTDIR: data directories written by the
# netsemd of an older COMMIT, packed as .tar.gz, for tests/compat (this
# build started on what an older release left on disk, as etcd, CockroachDB
# and PostgreSQL keep theirs).
#
# It builds netsemd at COMMIT in a throwaway worktree, /tmp/netsem-compat-SHA
# (RelWithDebInfo, the netsemd target only, nice'd, through the shared
# ccache; removed at the end, unless NETSEM_COMPAT_KEEP=1 keeps it so that a
# second run builds nothing),
# starts it, writes known state through the protocol (python3, plain
# sockets), stops it and packs its data directories into OUTDIR:
#
#   cluster-v2.tar.gz     three servers (s1 s2 s3), stopped cleanly (SIGTERM)
#   single-v2.tar.gz      one server's journal and snapshot, stopped cleanly
#   single-killed-v2.tar.gz  the same directory after one more run, killed -9
#
# and, beside each, NAME.expect: `key value` lines of what the state holds
# (GET answers, the last fence, the resumable sessions' ids and secrets),
# which tests/compat/compat_test.cc reads. The resumable sessions' timeout is
# 30 s, so by the time a test starts the fixture it has long passed: they live
# on only through what the new build does at its start (a new leader's
# TouchAll gives every session a whole timeout).
#
# Addresses: the cluster runs on 127.0.29.1-3, client port 29559, Raft port
# 29701; the single server on 127.0.29.4:29559. Fixed, because the Raft
# configuration stored in the log names them and the test must start the
# servers where the log says they are; 127.0.29.0/24 is a loopback range no
# other test of the project uses, so the test can reuse it. The cluster's
# secret is COMPAT_SECRET below (the test writes the same one).
#
# The Raft log gets a snapshot: netsemd has no option for libraft's snapshot
# threshold (8192 entries), so the script proposes ACQUIRE/RELEASE pairs
# until every server has a snapshot file, then writes more after it.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 COMMIT OUTDIR" >&2
  exit 2
fi
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
sha=$(git -C "$repo" rev-parse --short=7 "$1^{commit}")
full_sha=$(git -C "$repo" rev-parse "$1^{commit}")
mkdir -p "$2"
outdir=$(cd "$2" && pwd)
COMPAT_SECRET=compat-fixture-cluster-secret-0123456789

# 1. The old netsemd, built once.
tree=/tmp/netsem-compat-$sha
netsemd=$tree/build/src/server/netsemd
if [ ! -x "$netsemd" ]; then
  [ -d "$tree" ] || git -C "$repo" worktree add -f --detach "$tree" "$full_sha" >/dev/null
  export CCACHE_BASEDIR=$tree CCACHE_DIR=${CCACHE_DIR:-/work/.ccache} CCACHE_NOHASHDIR=1
  cmake -S "$tree" -B "$tree/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache >/dev/null
  nice cmake --build "$tree/build" -j2 --target netsemd
fi
echo "netsemd of $sha: $netsemd"

work=$(mktemp -d /tmp/netsem-compat-run.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$work"
  if [ "${NETSEM_COMPAT_KEEP:-0}" != 1 ]; then git -C "$repo" worktree remove --force "$tree" || true; fi
}
trap cleanup EXIT

# Starts netsemd with config $1, log $2; waits until it listens; its pid
# in $started.
start() {
  "$netsemd" --config "$1" >"$2" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do
    if grep -q "listening on" "$2"; then
      started=$pid
      return
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "netsemd did not start:" >&2
  cat "$2" >&2
  exit 1
}
# SIGTERM to pid $1, which must exit 0 within 20 s.
stop() {
  kill -TERM "$1"
  for _ in $(seq 400); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.05
  done
  wait "$1" || {
    echo "netsemd $1 did not stop cleanly" >&2
    exit 1
  }
}

client=$work/client.py
cat >"$client" <<'EOF'
# The fixtures' writer: plain protocol v1 lines, one request at a time.
import os, socket, sys, time

class Conn:
    def __init__(self, host, port=29559):
        self.s = socket.create_connection((host, port), timeout=30)
        self.buf = b""
        self.n = 0
    def req(self, line):
        self.n += 1
        tag = "t%d" % self.n
        self.s.sendall(("%s %s\n" % (tag, line)).encode())
        while True:
            while b"\n" not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise SystemExit("connection closed at: " + line)
                self.buf += chunk
            answer, self.buf = self.buf.split(b"\n", 1)
            answer = answer.decode()
            if answer.startswith(tag + " "):
                return answer[len(tag) + 1:]
    def ok(self, line):
        answer = self.req(line)
        if not answer.startswith("OK"):
            raise SystemExit("%s: %s" % (line, answer))
        return answer[3:]
    def drop(self):  # no QUIT: a resumable session stays
        self.s.close()

def fence_pairs(c, n):
    last = 0
    for _ in range(n):
        last = int(c.ok("ACQUIRE lock 1 5000"))
        c.ok("RELEASE lock")
    return last

def snapshots(dirs):
    return all(any(f.startswith("snapshot-") and not f.endswith(".meta") for f in os.listdir(d)) for d in dirs)

def expect(out, c, names, extra):
    with open(out, "w") as f:
        for name in names:
            f.write("get %s %s\n" % (name, c.ok("GET " + name)))
        for key, value in extra:
            f.write("%s %s\n" % (key, value))

mode, out = sys.argv[1], sys.argv[2]
names = ["alpha", "beta", "gone", "omega", "held", "lock"]
if mode == "cluster":
    raft_dirs = sys.argv[3:]
    leader = None
    deadline = time.time() + 30
    while leader is None and time.time() < deadline:
        try:
            answer = Conn("127.0.29.1").req("LEADER")
            if answer.startswith("OK "):
                leader = answer[3:].rsplit(":", 1)[0]
        except OSError:
            pass
        if leader is None:
            time.sleep(0.2)
    if leader is None:
        raise SystemExit("no leader")
    followers = [h for h in ("127.0.29.1", "127.0.29.2", "127.0.29.3") if h != leader]
    c = Conn(leader)
    # Before the snapshot: created values, a deleted name, a resumable session
    # holding a permit (opened through a follower).
    c.ok("CREATE alpha 3 5")
    c.ok("WAIT alpha 1")           # alpha 2 of 5
    c.ok("CREATE beta 0 4")
    c.ok("POST beta 3")            # beta 3 of 4
    c.ok("CREATE gone 1")
    c.ok("DELETE gone")            # gone: absent
    c.ok("CREATE held 2")
    early = Conn(followers[0])
    early_id, early_secret = early.ok("RESUMABLE").split()
    early_fence = int(early.ok("ACQUIRE held 1 5000"))
    pairs = 0
    while not snapshots(raft_dirs):
        fence_pairs(c, 100)
        pairs += 100
        early.req("PING")              # within its session timeout
        if pairs > 20000:
            raise SystemExit("no snapshot after %d ACQUIRE/RELEASE pairs" % pairs)
    # After it: entries only in the log.
    c.ok("CREATE omega 7 9")
    c.ok("WAIT omega 2")           # omega 5 of 9
    c.ok("POST alpha 1")           # alpha 3 of 5
    late = Conn(followers[1])
    late_id, late_secret = late.ok("RESUMABLE").split()
    late_fence = int(late.ok("ACQUIRE held 1 5000"))
    last_fence = fence_pairs(c, 50)
    expect(out, c, names, [("leader", leader), ("pairs", pairs + 50), ("last_fence", last_fence),
                           ("session_early", "%s %s %d" % (early_id, early_secret, early_fence)),
                           ("session_late", "%s %s %d" % (late_id, late_secret, late_fence))])
    early.drop()
    late.drop()
    time.sleep(0.5)
elif mode == "single1":
    c = Conn("127.0.29.4")
    c.ok("CREATE alpha 3 5")
    c.ok("WAIT alpha 1")
    c.ok("CREATE beta 0 4")
    c.ok("POST beta 3")
    fence_pairs(c, 20)
elif mode == "single2":
    c = Conn("127.0.29.4")
    c.ok("CREATE omega 7 9")
    c.ok("WAIT omega 2")
    c.ok("POST alpha 1")
    c.ok("CREATE gone 1")
    c.ok("DELETE gone")
    last_fence = fence_pairs(c, 20)
    expect(out, c, names[:4] + ["lock"], [("last_fence", last_fence)])
elif mode == "single3":
    c = Conn("127.0.29.4")
    c.ok("CREATE kappa 2 3")
    c.ok("WAIT kappa 1")           # kappa 1 of 3
    c.ok("POST beta 1")            # beta 4 of 4
    last_fence = fence_pairs(c, 10)
    expect(out, c, names[:4] + ["kappa", "lock"], [("last_fence", last_fence)])
EOF

# 2. The cluster: three servers, stopped cleanly.
mkdir -p "$work/cluster"
for i in 1 2 3; do
  printf '%s\n' "$COMPAT_SECRET" >"$work/secret.$i"
  chmod 600 "$work/secret.$i"
  mkdir -p "$work/cluster/s$i"
  cat >"$work/s$i.ini" <<EOF
[server]
bind_address = 127.0.29.$i
bind_port = 29559
data_dir = $work/cluster/s$i
stats_dir = $work/cluster/s$i
http_enabled = off
session_timeout_ms = 30000
[semaphores]
lock = 1
[cluster]
id = $i
secret_file = $work/secret.$i
server.1 = 127.0.29.1:29701 127.0.29.1:29559
server.2 = 127.0.29.2:29701 127.0.29.2:29559
server.3 = 127.0.29.3:29701 127.0.29.3:29559
EOF
done
cluster_pids=()
for i in 1 2 3; do
  start "$work/s$i.ini" "$work/s$i.log"
  cluster_pids+=("$started")
done
/usr/bin/python3 "$client" cluster "$outdir/cluster-v2.expect" "$work"/cluster/s{1,2,3}/raft
for pid in "${cluster_pids[@]}"; do stop "$pid"; done
tar -czf "$outdir/cluster-v2.tar.gz" -C "$work/cluster" s1 s2 s3

# 3. One server: a snapshot (the compaction at the second start) and a
# journal after it; then a run killed -9.
mkdir -p "$work/single"
cat >"$work/single.ini" <<EOF
[server]
bind_address = 127.0.29.4
bind_port = 29559
data_dir = $work/single
stats_dir = $work/single
http_enabled = off
fsync = always
[semaphores]
lock = 1
EOF
start "$work/single.ini" "$work/single1.log"
pid=$started
/usr/bin/python3 "$client" single1 /dev/null
stop "$pid"
start "$work/single.ini" "$work/single2.log"
pid=$started
/usr/bin/python3 "$client" single2 "$outdir/single-v2.expect"
stop "$pid"
tar -czf "$outdir/single-v2.tar.gz" -C "$work" single
start "$work/single.ini" "$work/single3.log"
pid=$started
/usr/bin/python3 "$client" single3 "$outdir/single-killed-v2.expect"
{
  kill -9 "$pid"
  wait "$pid"
} 2>/dev/null || true
tar -czf "$outdir/single-killed-v2.tar.gz" -C "$work" single

for f in cluster-v2 single-v2 single-killed-v2; do
  sed -i "1i commit $full_sha" "$outdir/$f.expect"
done
ls -l "$outdir"
