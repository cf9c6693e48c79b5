#!/usr/bin/env bash
# The Debian package under a real systemd, on a clean Debian 12. Usage:
# NETSEM_SYSTEMD_TEST=1 systemd_test.sh BUILD_DIR SOURCE_DIR, on demand
# (docs/operations.md, "Running under systemd"): it needs root, systemd-nspawn, nsenter and
# debootstrap (apt-get install debootstrap systemd-container), and the first
# run needs the Debian mirror. It exits 77 (skipped) when it cannot run here.
#
# 1. Builds netsem_<version>_<arch>.deb with cpack from BUILD_DIR's binaries.
# 2. A minimal Debian 12 (debootstrap --variant=minbase with systemd and
#    curl, then the package's dependencies as its Depends field names them:
#    "dpkg -i, with its dependencies installed"), kept as a tarball in
#    NETSEM_SYSTEMD_TEST_CACHE (default /var/tmp/netsem-systemd-test-cache)
#    and unpacked afresh for every run under /var/tmp.
# 3. Boots it with systemd-nspawn -b (systemd as the container's init, a
#    private network: only its loopback), and in it: dpkg -i the package;
#    the unit is enabled and active (Type=notify: READY=1 came); STATUS;
#    GET /readyz; an ACQUIRE over TCP and `netsem run` with its holder
#    listed; `systemctl reload` after a [semaphores] edit (the name is
#    defined, the same process, no warning); lines filed by priority
#    (journalctl -p warning); the watchdog: with
#    WatchdogSec=500ms, netsemd recovering a data directory of many created
#    semaphores for longer than that is not killed (systemd arms the
#    watchdog at READY=1), pings keep it alive, a stopped process is killed
#    by it and restarted with its semaphores; `systemctl stop` (a clean exit);
#    the log lines in the journal; dpkg --purge leaves no state.
# Every step is bounded in time; a trap stops the container and deletes it.
set -euo pipefail
build_dir="$(cd "$1" && pwd)"
test -d "$2" || { echo "usage: systemd_test.sh BUILD_DIR SOURCE_DIR" >&2; exit 2; }
skip() {
  echo "systemd_test: skipped: $*"
  exit 77
}
fail() {
  echo "systemd_test: FAIL: $*" >&2
  if [ -n "${leader:-}" ]; then
    echo "--- journal of netsemd.service in the container:" >&2
    ct journalctl -u netsemd --no-pager -o short-monotonic 2>&1 | tail -40 >&2 || true
  fi
  exit 1
}
note() { echo "systemd_test: $*"; }

[ "${NETSEM_SYSTEMD_TEST:-0}" = 1 ] || skip "on demand only: NETSEM_SYSTEMD_TEST=1 runs it (about 20 s, 1 min more the first time)"
[ "$(id -u)" -eq 0 ] || skip "not root"
for tool in systemd-nspawn nsenter cpack dpkg-deb python3; do
  command -v "$tool" >/dev/null || skip "no $tool (apt-get install systemd-container util-linux cmake dpkg python3)"
done
cache_dir="${NETSEM_SYSTEMD_TEST_CACHE:-/var/tmp/netsem-systemd-test-cache}"

scratch="$(mktemp -d /var/tmp/netsem-systemd-test.XXXXXX)"
nspawn_pid=""
leader=""
host_server_pid=""
cleanup() {
  if [ -n "$host_server_pid" ]; then kill -KILL "$host_server_pid" 2>/dev/null || true; fi
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    # SIGTERM asks nspawn to shut the container down; KILL if it hangs.
    kill -TERM "$nspawn_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$nspawn_pid" 2>/dev/null || true
    wait "$nspawn_pid" 2>/dev/null || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT
# A command in the booted container (its namespaces: mount, pid, net, ...).
ct() { nsenter --target "$leader" --all -- "$@"; }
# Polls `condition` (a command) every 0.1 s for at most `seconds`.
wait_until() {
  local seconds=$1
  shift
  for _ in $(seq $((seconds * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  "$@" >/dev/null 2>&1
}
show() { ct systemctl show netsemd -p "$1" --value; }

# --- 1. the package ----------------------------------------------------------
version="$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build_dir/CPackConfig.cmake")"
test -n "$version" || fail "no CPACK_PACKAGE_VERSION in $build_dir/CPackConfig.cmake"
arch="$(dpkg --print-architecture)"
cpack -G DEB --config "$build_dir/CPackConfig.cmake" -B "$scratch/out" >"$scratch/cpack.log" 2>&1 ||
  fail "cpack failed: $(cat "$scratch/cpack.log")"
deb="$scratch/out/netsem_${version}_${arch}.deb"
test -f "$deb" || fail "cpack made no $deb"

# --- 2. a clean Debian 12 with the package's dependencies --------------------
# "libc6 (>= 2.34), libfmt9 (>= 9.1.0+ds1), ..." -> libc6,libfmt9,...
depends="$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/ //g' | grep -v '^$' | sort | paste -sd,)"
include="systemd,systemd-sysv,dbus,curl"
key="$(printf '%s' "$include,$depends" | sha256sum | cut -c1-12)"
rootfs_tar="$cache_dir/bookworm-$key.tar"
mkdir -p "$cache_dir"
exec 9>"$cache_dir/lock"
flock -w 900 9 || fail "another run held $cache_dir/lock for 15 minutes"
if [ ! -f "$rootfs_tar" ]; then
  command -v debootstrap >/dev/null || skip "no debootstrap to make the Debian 12 root (apt-get install debootstrap)"
  note "making a Debian 12 root with debootstrap (a few minutes; kept in $rootfs_tar)"
  started=$SECONDS
  if ! timeout 1200 debootstrap --variant=minbase --include="$include" bookworm "$scratch/bootstrap" \
    "${NETSEM_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$scratch/debootstrap.log" 2>&1; then
    skip "debootstrap failed (no mirror?): $(tail -3 "$scratch/debootstrap.log")"
  fi
  # The dependencies by apt in the new root (debootstrap resolves no virtual
  # package, such as libspdlog1.10-fmt9).
  read -r -a packages <<<"${depends//,/ }"
  if ! timeout 600 systemd-nspawn --directory="$scratch/bootstrap" --register=no --keep-unit --quiet \
    apt-get install -y --no-install-recommends "${packages[@]}" >"$scratch/apt.log" 2>&1; then
    skip "apt-get install of the package's dependencies failed: $(tail -3 "$scratch/apt.log")"
  fi
  rm -rf "$scratch/bootstrap/var/cache/apt/archives/"*.deb
  tar -C "$scratch/bootstrap" -cf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
  rm -rf "$scratch/bootstrap"
  note "debootstrap took $((SECONDS - started)) s"
fi
root="$scratch/root"
mkdir "$root"
tar -C "$root" -xf "$rootfs_tar"
flock -u 9
! test -e "$root/usr/sbin/netsemd" || fail "the Debian root has a netsemd already"
cp "$deb" "$root/root/"

# A data directory of many created semaphores, made by the built netsemd on
# the host (the same journal format), for the watchdog part: its recovery
# must take longer than the watchdog's 0.5 s (about 1 s here).
big_names="${NETSEM_SYSTEMD_TEST_NAMES:-500000}"
mkdir "$scratch/big"
printf '[server]\nhttp_enabled = off\nfsync = no\n' >"$scratch/big.ini"
python3 - "$build_dir/src/server/netsemd" "$scratch/big.ini" "$scratch/big" "$big_names" <<'PY' ||
import re, socket, subprocess, sys
netsemd, config, data, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
server = subprocess.Popen([netsemd, "--config", config, "--data-dir", data, "--port", "0"],
                          stderr=subprocess.PIPE, text=True)
try:
    port = None
    for line in server.stderr:
        found = re.search(r"listening on [^ ]*:(\d+)", line)
        if found:
            port = int(found.group(1))
            break
    connection = socket.create_connection(("127.0.0.1", port), timeout=60)
    answers = connection.makefile("rb")
    for start in range(0, n, 10000):
        end = min(n, start + 10000)
        connection.sendall("".join(f"c CREATE big/{i:08d} 1\n" for i in range(start, end)).encode())
        for _ in range(end - start):
            answer = answers.readline()
            if not answer.startswith(b"c OK"):
                sys.exit(f"CREATE answered {answer!r}")
    connection.sendall(b"q QUIT\n")
    answers.readline()
finally:
    server.terminate()
    sys.exit(server.wait())
PY
  fail "could not make the data directory of $big_names created semaphores"

# --- 3. boot it --------------------------------------------------------------
systemd-nspawn --directory="$root" --boot --register=no --keep-unit --private-network --quiet \
  --machine="netsem-test-$$" >"$scratch/console.log" 2>&1 &
nspawn_pid=$!
for _ in $(seq 100); do
  leader="$(pgrep -P "$nspawn_pid" -x systemd || true)"
  [ -n "$leader" ] && break
  kill -0 "$nspawn_pid" 2>/dev/null || fail "systemd-nspawn exited: $(cat "$scratch/console.log")"
  sleep 0.1
done
[ -n "$leader" ] || fail "no systemd in the container after 10 s: $(cat "$scratch/console.log")"
# Until its bus is up, systemctl cannot ask; then "starting" until booted.
booted() {
  state="$(ct systemctl is-system-running 2>&1 || true)"
  [ "$state" = running ] || [ "$state" = degraded ]
}
wait_until 60 booted || fail "the container's systemd did not finish booting in 60 s: '$state'"
note "booted a Debian 12 with $(ct systemctl --version | head -1)"

# --- dpkg -i: enabled, started, ready ----------------------------------------
ct dpkg -i "/root/$(basename "$deb")" >"$scratch/dpkg.log" 2>&1 || fail "dpkg -i: $(cat "$scratch/dpkg.log")"
test "$(ct systemctl is-enabled netsemd)" = enabled || fail "netsemd.service is not enabled after dpkg -i"
# postinst's start returns once systemd has READY=1 (Type=notify).
test "$(ct systemctl is-active netsemd)" = active || fail "netsemd.service is $(ct systemctl is-active netsemd)"
status_text="$(show StatusText)"
grep -q '^serving on 127.0.0.1:53559, 0 defined semaphores$' <<<"$status_text" || fail "StatusText: $status_text"
pid="$(show MainPID)"
# DynamicUser=: an unprivileged user of systemd's making, owning the state.
uid="$(ct stat -c %u "/proc/$pid")"
if [ "$uid" = 0 ] || [ "$(ct stat -c %u /var/lib/private/netsem)" != "$uid" ]; then
  fail "netsemd runs as uid $uid, not as the owner of its state directory"
fi
readyz="$(ct curl -sS --max-time 5 http://127.0.0.1:53560/readyz)" || fail "GET /readyz failed"
grep -q '"status":"ready"' <<<"$readyz" || fail "GET /readyz: $readyz"

# An ACQUIRE over TCP (bash's /dev/tcp: the protocol as written), then the
# installed client holding a permit while it lists the holder.
answers="$(ct timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/53559
  printf "h HELLO 1 systemd-test\na ACQUIRE printer 1 1000\ng GET printer\nq QUIT\n" >&3
  cat <&3')" || fail "the protocol exchange failed: $answers"
grep -q '^a OK [0-9]' <<<"$answers" || fail "ACQUIRE over TCP: $answers"
grep -q '^g OK 0 1 1 0 undefined' <<<"$answers" || fail "GET while held: $answers"
held="$(ct netsem --label systemd-test run --timeout 5s printer -- netsem holders printer)" || fail "netsem run: $held"
grep -q systemd-test <<<"$held" || fail "netsem holders shows no systemd-test holder: $held"

# --- systemctl reload --------------------------------------------------------
sed -i 's/^\[semaphores\]$/[semaphores]\nsystemd-test = 3/' "$root/etc/netsem/netsem.ini"
ct systemctl reload netsemd || fail "systemctl reload failed"
test "$(show MainPID)" = "$pid" || fail "the reload replaced the process"
status_is() { test "$(show StatusText)" = "$1"; }
wait_until 5 status_is 'serving on 127.0.0.1:53559, 1 defined semaphores' ||
  fail "StatusText after the reload: $(show StatusText)"
got="$(ct netsem get systemd-test)"
grep -Eq 'systemd-test +defined +3/3' <<<"$got" || fail "after the reload: $got"
journal="$(ct journalctl -u netsemd --no-pager -o cat)"
grep -q 'SIGHUP: reloaded 1 defined semaphores' <<<"$journal" || fail "no reload line in the journal"
! grep -q 'changed; it takes effect after a restart' <<<"$journal" || fail "the reload warned: $journal"
# Each line reaches the journal with its priority ("<4>" before a warning:
# JOURNAL_STREAM): a reload of an option only a restart takes warns, and
# `journalctl -p warning` shows that warning and no info line.
sed -i 's/^max_semaphores = .*/max_semaphores = 5000/' "$root/etc/netsem/netsem.ini"
ct systemctl reload netsemd || fail "systemctl reload (max_semaphores) failed"
warnings="$(ct journalctl -u netsemd -p warning --no-pager -o cat)"
grep -q 'warning SIGHUP: max_semaphores changed; it takes effect after a restart' <<<"$warnings" ||
  fail "journalctl -p warning lacks the reload's warning: $warnings"
! grep -q ' info ' <<<"$warnings" || fail "journalctl -p warning shows info lines: $warnings"
sed -i 's/^max_semaphores = .*/max_semaphores = 1000000/' "$root/etc/netsem/netsem.ini"
ct systemctl reload netsemd || fail "systemctl reload failed"
# The log's events reach the journal: the sessions above, begun and ended.
grep -q 'session label .*label=systemd-test' <<<"$journal" || fail "no session label line in the journal"
grep -q 'session ended .*label=systemd-test cause=quit' <<<"$journal" || fail "no session ended line in the journal"

# --- the watchdog --------------------------------------------------------------
mkdir -p "$root/etc/systemd/system/netsemd.service.d"
printf '[Service]\nWatchdogSec=500ms\n' >"$root/etc/systemd/system/netsemd.service.d/watchdog.conf"
ct systemctl stop netsemd
owner="$(ct stat -c %u:%g /var/lib/private/netsem)"
rm -f "$root/var/lib/private/netsem/"*
cp "$scratch/big/"{journal,snapshot,fences,run} "$root/var/lib/private/netsem/"
chown "$owner" "$root/var/lib/private/netsem/"*
ct systemctl daemon-reload
ct systemctl start netsemd || fail "netsemd did not start on $big_names created semaphores"
# (The property is the running service's: the old value until it starts.)
test "$(show WatchdogUSec)" = 500ms || fail "WatchdogUSec: $(show WatchdogUSec)"
start_us="$(show ExecMainStartTimestampMonotonic)"
ready_us="$(show ActiveEnterTimestampMonotonic)"
startup_ms=$(((ready_us - start_us) / 1000))
note "recovery of $big_names created semaphores: $startup_ms ms from exec to READY=1 (WatchdogSec=500ms)"
[ "$startup_ms" -gt 500 ] || note "the start took under the watchdog's 0.5 s: a recovery's starving it is not tested here"
test "$(show NRestarts)" = 0 || fail "netsemd was restarted during its recovery"
pid="$(show MainPID)"
sleep 3 # pings every 0.25 s must keep it alive for 6 watchdog periods
test "$(show MainPID)" = "$pid" || fail "netsemd was replaced while it served: $(show Result)"
test "$(show NRestarts)" = 0 || fail "netsemd was restarted while it served"
# A stopped loop sends no ping: the watchdog kills it, Restart= starts it again.
ct sh -c "kill -STOP $pid"
restarts_are() { test "$(show NRestarts)" = "$1"; }
wait_until 30 restarts_are 1 || fail "the watchdog did not restart a stopped netsemd"
grep -q 'Watchdog timeout' <<<"$(ct journalctl -u netsemd --no-pager -o cat)" || fail "no watchdog timeout in the journal"
is_active() { test "$(ct systemctl is-active netsemd)" = active; }
wait_until 60 is_active || fail "netsemd did not come back after the watchdog"
got="$(ct netsem get big/00000000)"
grep -Eq 'big/00000000 +created' <<<"$got" || fail "after the watchdog's restart: $got"
note "the watchdog killed a stopped netsemd and systemd restarted it"

# --- systemctl stop ------------------------------------------------------------
ct systemctl stop netsemd || fail "systemctl stop failed"
test "$(show Result)" = success || fail "Result after stop: $(show Result)"
test "$(show ExecMainStatus)" = 0 || fail "exit status after stop: $(show ExecMainStatus)"
grep -q 'netsemd stopped' <<<"$(ct journalctl -u netsemd --no-pager -o cat)" || fail "no 'netsemd stopped' line"

# --- dpkg --purge ------------------------------------------------------------
ct dpkg --purge netsem >"$scratch/dpkg.log" 2>&1 || fail "dpkg --purge: $(cat "$scratch/dpkg.log")"
for path in /var/lib/netsem /var/lib/private/netsem /etc/netsem /usr/sbin/netsemd; do
  ! ct test -e "$path" || fail "$path is left after the purge"
done
note "installed, served, reloaded, watched, stopped and purged under systemd"
