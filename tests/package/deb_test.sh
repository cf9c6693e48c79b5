#!/usr/bin/env bash
# The Debian package, end to end. Usage: deb_test.sh BUILD_DIR SOURCE_DIR
#
# 1. Builds netsem_<version>_<arch>.deb with cpack from BUILD_DIR's binaries
#    (into a scratch directory) and checks its control fields, maintainer
#    scripts, conffiles and every path it should hold, and nothing outside
#    /etc/netsem, /usr and /lib/systemd/system.
# 2. Only as root, with dpkg, and with no netsem package installed already
#    (else it says why it skips that part): installs it with dpkg -i (twice:
#    the second is an upgrade), checks the files against their md5sums, the
#    installed netsemd's version, the linker cache; starts the installed
#    netsemd as its unit does (the unit's ExecStart, with a copy of the
#    installed configuration on free loopback ports and a scratch state
#    directory, since systemd is not this machine's init), holds a permit
#    with the installed netsem, builds the consumer project against the
#    installed package (find_package, static and shared, and pkg-config);
#    then dpkg -r (the conffile stays), dpkg --purge, and checks that nothing
#    is left. A trap purges the package whatever happens, and a lock keeps
#    two runs on one machine from installing at once.
set -euo pipefail
build_dir="$(cd "$1" && pwd)"
source_dir="$(cd "$2" && pwd)"
scratch="$(mktemp -d)"
installed=""
server_pid=""
notify_pid=""
made_state=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true; fi
  if [ -n "$notify_pid" ]; then kill -KILL "$notify_pid" 2>/dev/null && wait "$notify_pid" 2>/dev/null || true; fi
  if [ -n "$installed" ]; then dpkg --purge netsem >/dev/null 2>&1 || echo "deb_test: could not purge netsem" >&2; fi
  if [ -n "$made_state" ]; then
    rm -rf /var/lib/netsem /var/lib/private/netsem
    [ "$made_state" != private ] || rmdir /var/lib/private 2>/dev/null || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT
fail() { echo "deb_test: $*" >&2; exit 1; }
# Output is matched as `grep -q P <<<"$(command)"`, never `command | grep -q P`:
# with pipefail, grep leaving at the first match can make the command die of
# SIGPIPE and the pipeline fail.

# --- 1. build and inspect ---------------------------------------------------
version="$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build_dir/CPackConfig.cmake")"
test -n "$version" || fail "no CPACK_PACKAGE_VERSION in $build_dir/CPackConfig.cmake"
arch="$(dpkg --print-architecture)"
cpack -G DEB --config "$build_dir/CPackConfig.cmake" -B "$scratch/out" >"$scratch/cpack.log" 2>&1 ||
  fail "cpack failed: $(cat "$scratch/cpack.log")"
deb="$scratch/out/netsem_${version}_${arch}.deb"
test -f "$deb" || fail "no $deb; cpack made: $(ls "$scratch/out")"

field() { dpkg-deb -f "$deb" "$1"; }
test "$(field Package)" = netsem || fail "Package: $(field Package)"
test "$(field Version)" = "$version" || fail "Version: $(field Version), not $version"
test "$(field Architecture)" = "$arch" || fail "Architecture: $(field Architecture)"
for name in Maintainer Description Section Priority; do
  test -n "$(field "$name")" || fail "no $name field"
done
# Depends computed by dpkg-shlibdeps: the C and C++ runtimes, spdlog, fmt and
# OpenSSL (libssl3: TLS in netsemd and libnetsem).
depends="$(field Depends)"
for library in libc6 libstdc++6 libspdlog libfmt libssl3; do
  grep -q "$library" <<<"$depends" || fail "Depends lacks $library: $depends"
done

dpkg-deb -e "$deb" "$scratch/control"
for script in postinst prerm postrm; do
  test -x "$scratch/control/$script" || fail "no executable $script in the control archive"
  sh -n "$scratch/control/$script" || fail "$script is not valid sh"
done
test "$(cat "$scratch/control/conffiles")" = /etc/netsem/netsem.ini || fail "conffiles: $(cat "$scratch/control/conffiles")"
grep -qx "libnetsem 0.1 netsem (= $version)" "$scratch/control/shlibs" || fail "shlibs: $(cat "$scratch/control/shlibs")"
grep -qx "activate-noawait ldconfig" "$scratch/control/triggers" || fail "no ldconfig trigger"

dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|; s|/$||' | grep -v '^$' | sort >"$scratch/paths"
multiarch="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)"
expected=(
  /usr/sbin/netsemd /usr/bin/netsem
  /etc/netsem/netsem.ini
  /usr/include/netsem/client.h /usr/include/netsem/client_options.h /usr/include/netsem/permit.h
  /usr/include/netsem/status.h /usr/include/netsem/cancel_token.h /usr/include/netsem/log.h /usr/include/netsem/version.h
  "/usr/lib/$multiarch/libnetsem.so" "/usr/lib/$multiarch/libnetsem.so.0.1" "/usr/lib/$multiarch/libnetsem.so.$version"
  "/usr/lib/$multiarch/libnetsem.a"
  "/usr/lib/$multiarch/cmake/netsem/netsemConfig.cmake" "/usr/lib/$multiarch/cmake/netsem/netsemConfigVersion.cmake"
  "/usr/lib/$multiarch/cmake/netsem/netsemTargets.cmake"
  "/usr/lib/$multiarch/pkgconfig/netsem.pc"
  /usr/share/man/man8/netsemd.8.gz /usr/share/man/man1/netsem.1.gz
  /usr/share/bash-completion/completions/netsem /usr/share/bash-completion/completions/netsemd
  /usr/share/doc/netsem/copyright /usr/share/doc/netsem/README.md /usr/share/doc/netsem/configuration.md
  /lib/systemd/system/netsemd.service
  /usr/share/doc/netsem/changelog.gz /usr/share/lintian/overrides/netsem
)
for path in "${expected[@]}"; do
  grep -qx -- "$path" "$scratch/paths" || fail "the package lacks $path"
done
stray="$(grep -v -e '^/usr\(/\|$\)' -e '^/etc$' -e '^/etc/netsem\(/\|$\)' -e '^/lib$' -e '^/lib/systemd\(/system\)\?$' \
  -e '^/lib/systemd/system/netsemd\.service$' "$scratch/paths" || true)"
test -z "$stray" || fail "files outside /usr, /etc/netsem and the unit: $stray"
# The library as Debian wants it: its soname, and binaries stripped.
dpkg-deb -x "$deb" "$scratch/tree"
grep -q 'SONAME.*\[libnetsem\.so\.0\.1\]' <<<"$(readelf -d "$scratch/tree/usr/lib/$multiarch/libnetsem.so.$version")" ||
  fail "libnetsem.so has not the soname libnetsem.so.0.1"
for binary in usr/sbin/netsemd usr/bin/netsem "usr/lib/$multiarch/libnetsem.so.$version"; do
  ! grep -q '\.debug_info' <<<"$(readelf -S "$scratch/tree/$binary")" || fail "$binary is not stripped"
done
# The packaged man pages are the ones in man/.
cmp <(gzip -dc "$scratch/tree/usr/share/man/man8/netsemd.8.gz") "$source_dir/man/netsemd.8" || fail "netsemd.8.gz differs from man/netsemd.8"
# Debian's own checker, when installed: no error and no warning, but the
# placeholder maintainer address (NETSEM_PACKAGE_CONTACT, cmake/packaging.cmake).
if command -v lintian >/dev/null; then
  lintian_out="$(lintian --suppress-tags bogus-mail-host,bogus-mail-host-in-debian-changelog "$deb" 2>&1 |
    grep -v '^running with root privileges' || true)"
  test -z "$lintian_out" || fail "lintian: $lintian_out"
else
  echo "deb_test: no lintian here: the package is not checked by it" >&2
fi
echo "deb_test: $(basename "$deb") built and checked ($(wc -l <"$scratch/paths") paths)"

# --- 2. install, use, remove ------------------------------------------------
skip() { echo "deb_test: not installing the package: $*"; exit 0; }
[ "$(id -u)" -eq 0 ] || skip "not root"
command -v dpkg >/dev/null || skip "no dpkg"
[ "${NETSEM_DEB_INSTALL_TEST:-1}" != 0 ] || skip "NETSEM_DEB_INSTALL_TEST=0"
# One run at a time on a machine: two would install, purge and check the
# same paths under each other.
exec 9>/run/lock/netsem-deb-test.lock
flock -w 600 9 || fail "another deb_test held /run/lock/netsem-deb-test.lock for 10 minutes"
if grep -q installed <<<"$(dpkg-query -W -f='${Status}' netsem 2>/dev/null)"; then
  skip "a netsem package is installed already (it is not this test's to remove)"
fi
for path in /etc/netsem /var/lib/netsem /var/lib/private/netsem; do
  [ ! -e "$path" ] || skip "$path exists already (not this test's to remove)"
done
ldconfig_has() { grep -q 'libnetsem\.so\.0\.1 ' <<<"$(ldconfig -p)"; }

installed=yes
dpkg -i "$deb" >"$scratch/dpkg.log" 2>&1 || fail "dpkg -i failed: $(cat "$scratch/dpkg.log")"
# Again: the upgrade path of the maintainer scripts (postinst configure with
# the old version).
dpkg -i "$deb" >"$scratch/dpkg.log" 2>&1 || fail "dpkg -i (upgrade) failed: $(cat "$scratch/dpkg.log")"
grep -qx "install ok installed" <<<"$(dpkg-query -W -f='${Status}' netsem)" || fail "netsem is not installed: $(dpkg-query -W -f='${Status}' netsem)"
verify="$(dpkg --verify netsem 2>&1)" || true
test -z "$verify" || fail "dpkg --verify netsem: $verify"
got="$(/usr/sbin/netsemd --version)"
grep -q "^netsemd $version " <<<"$got" || fail "/usr/sbin/netsemd --version says: $got"
ldconfig_has || fail "the linker cache does not have libnetsem.so.0.1 (the ldconfig trigger)"
# postinst enabled the unit (WantedBy=multi-user.target), as Debian's daemons are.
wants=/etc/systemd/system/multi-user.target.wants/netsemd.service
test "$(readlink "$wants")" = /lib/systemd/system/netsemd.service || fail "postinst did not enable netsemd.service ($wants)"
if command -v man >/dev/null; then
  MANPAGER=cat man -w netsemd >/dev/null 2>&1 || fail "man -w netsemd finds no page"
fi

# The unit: systemd-analyze verify finds nothing wrong with it as installed
# (its ExecStart binary is there now).
unit=/lib/systemd/system/netsemd.service
test -f "$unit" || fail "no $unit"
if command -v systemd-analyze >/dev/null; then
  verify_unit="$(systemd-analyze verify "$unit" 2>&1)" || fail "systemd-analyze verify $unit: $verify_unit"
  test -z "$verify_unit" || fail "systemd-analyze verify $unit: $verify_unit"
fi
# Its ExecStart, run here as systemd would run it but for these changes
# (systemd is not this machine's init): the configuration a copy of
# /etc/netsem/netsem.ini on port 0 (and an HTTP port of 0); the state
# directory a scratch one; and, as DynamicUser= would, an unprivileged user
# (nobody) owning only the state directory.
exec_start="$(sed -n 's/^ExecStart=[-@:+!]*//p' "$unit" | tail -1)"
test -n "$exec_start" || fail "no ExecStart in $unit"
read -r -a command <<<"$exec_start"
test "${command[0]}" = /usr/sbin/netsemd || fail "ExecStart runs ${command[0]}, not /usr/sbin/netsemd"
chmod 755 "$scratch"
config="$scratch/netsem.ini"
sed -e 's/^\(bind_port\|http_port\) *=.*/\1 = 0/' /etc/netsem/netsem.ini >"$config"
chmod 644 "$config"
state="$scratch/state"
mkdir -m 750 "$state"
for i in "${!command[@]}"; do
  case "${command[$i]}" in
    /etc/netsem/netsem.ini) command[$i]="$config" ;;
    '${STATE_DIRECTORY}' | '$STATE_DIRECTORY' | /var/lib/netsem) command[$i]="$state" ;;
  esac
done
as_user=()
if command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
  chown nobody:"$(id -gn nobody)" "$state"
  as_user=(setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups --no-new-privs)
fi
# systemd's notify socket (Type=notify): a datagram socket of the test's own,
# whose messages a listener writes to notify.log.
python3 - "$scratch/notify" "$scratch/notify.log" <<'PY' &
import os, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)  # netsemd runs as nobody
sock.settimeout(60)
with open(sys.argv[2], "a") as log:
    while True:
        try:
            message = sock.recv(4096).decode(errors="replace")
        except socket.timeout:
            break
        log.write(message.replace("\n", " ") + "\n")
        log.flush()
PY
notify_pid=$!
for _ in $(seq 100); do [ -S "$scratch/notify" ] && break; sleep 0.1; done
test -S "$scratch/notify" || fail "the notify socket's listener did not start"
: >"$scratch/netsemd.log"  # read below before the server's subshell may have opened it (set -e: sed would end the test)
(cd "$state" && NOTIFY_SOCKET="$scratch/notify" STATE_DIRECTORY="$state" exec "${as_user[@]}" "${command[@]}" --port 0 \
  >"$scratch/netsemd.log" 2>&1) &
server_pid=$!
port=""
for _ in $(seq 100); do
  port="$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$scratch/netsemd.log" | head -1)"
  [ -n "$port" ] && break
  kill -0 "$server_pid" 2>/dev/null || fail "the installed netsemd exited: $(cat "$scratch/netsemd.log")"
  sleep 0.1
done
test -n "$port" || fail "the installed netsemd did not listen within 10 s: $(cat "$scratch/netsemd.log")"
if [ ${#as_user[@]} -gt 0 ]; then
  uid="$(awk '/^Uid:/ {print $2}' "/proc/$server_pid/status")"
  test "$uid" = "$(id -u nobody)" || fail "netsemd runs as uid $uid, not nobody's"
fi
test -e "$state/run" || fail "netsemd keeps no run file in the state directory ($state): --data-dir not honoured?"
# Ready for systemd: READY=1 on the notify socket, once netsemd links
# libsystemd (until then it cannot say it, and the unit's Type=notify would
# time out).
if grep -q 'NEEDED.*libsystemd' <<<"$(readelf -d /usr/sbin/netsemd)"; then
  for _ in $(seq 100); do grep -q 'READY=1' "$scratch/notify.log" 2>/dev/null && break; sleep 0.1; done
  grep -q 'READY=1' "$scratch/notify.log" ||
    fail "the installed netsemd listens but sent systemd no READY=1 within 10 s: $(cat "$scratch/notify.log" 2>/dev/null)"
else
  echo "deb_test: the installed netsemd does not link libsystemd: READY=1 not checked" >&2
fi
# Its HTTP side, when the configuration has one: /readyz says ready.
http_port="$(sed -n 's|.*HTTP on http://[^ ]*:\([0-9][0-9]*\)/.*|\1|p' "$scratch/netsemd.log" | head -1)"
if grep -q '^http_port' "$config"; then
  test -n "$http_port" || fail "the installed netsemd does not say where its HTTP listener is: $(cat "$scratch/netsemd.log")"
  readyz="$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
    "http://127.0.0.1:$http_port/readyz")" || fail "GET /readyz of the installed netsemd failed"
  grep -q '"ready"' <<<"$readyz" || fail "GET /readyz: $readyz"
fi

# A permit held with the installed netsem: while it runs, the server lists the
# holder; afterwards the permit is back.
export NETSEM_SERVER="127.0.0.1:$port" NETSEM_FALLBACK=fail
held="$(/usr/bin/netsem --label deb-test run --timeout 5s deb-test-name -- /usr/bin/netsem holders deb-test-name)" ||
  fail "netsem run failed: $held"
grep -q "deb-test" <<<"$held" || fail "netsem holders, while held, shows no deb-test holder: $held"
after="$(/usr/bin/netsem get --json deb-test-name || true)"
grep -q '"holders": *0' <<<"$after" || fail "after the run, deb-test-name is still held: $after"

# The consumer project against the installed package, found where Debian's
# CMake and pkg-config look (no prefix given).
cmake -S "$source_dir/tests/package/consumer" -B "$scratch/consumer" -G Ninja >"$scratch/consumer.log" 2>&1 ||
  fail "the consumer does not configure: $(cat "$scratch/consumer.log")"
cmake --build "$scratch/consumer" >>"$scratch/consumer.log" 2>&1 || fail "the consumer does not build: $(cat "$scratch/consumer.log")"
"$scratch/consumer/consumer" >/dev/null
"$scratch/consumer/consumer_shared" >/dev/null
grep -Eq "libnetsem\.so\.0\.1 => (/usr)?/lib/$multiarch/libnetsem\.so\.0\.1" <<<"$(ldd "$scratch/consumer/consumer_shared")" ||
  fail "consumer_shared does not load /usr/lib/$multiarch/libnetsem.so.0.1: $(ldd "$scratch/consumer/consumer_shared")"
# shellcheck disable=SC2046  # the flags are meant to split
"${CXX:-c++}" -std=c++20 "$source_dir/tests/package/consumer/main.cc" -o "$scratch/consumer-pc" $(pkg-config --cflags --libs netsem)
"$scratch/consumer-pc" >/dev/null

kill -TERM "$server_pid"
wait "$server_pid" || fail "the installed netsemd exited $? on SIGTERM: $(cat "$scratch/netsemd.log")"
server_pid=""

# Remove: the conffile stays, the rest goes.
dpkg -r netsem >"$scratch/dpkg.log" 2>&1 || fail "dpkg -r failed: $(cat "$scratch/dpkg.log")"
test -f /etc/netsem/netsem.ini || fail "dpkg -r removed the conffile /etc/netsem/netsem.ini"
test ! -e /usr/sbin/netsemd || fail "dpkg -r left /usr/sbin/netsemd"
# Purge, with state as systemd's StateDirectory= under DynamicUser= leaves it.
made_state=yes
[ -d /var/lib/private ] || made_state=private
mkdir -p /var/lib/private/netsem
touch /var/lib/private/netsem/journal
ln -s private/netsem /var/lib/netsem
dpkg --purge netsem >"$scratch/dpkg.log" 2>&1 || fail "dpkg --purge failed: $(cat "$scratch/dpkg.log")"
installed=""
if grep -q installed <<<"$(dpkg-query -W -f='${Status}' netsem 2>/dev/null)"; then fail "netsem is still installed after the purge"; fi
left=()
while read -r path; do
  # Directories are shared (/usr/lib, /lib/systemd/system); the package's own
  # are checked below.
  [ -d "$path" ] && continue
  [ -e "$path" ] || [ -L "$path" ] && left+=("$path")
done <"$scratch/paths"
for path in /etc/netsem /var/lib/netsem /var/lib/private/netsem "/usr/lib/$multiarch/cmake/netsem" /usr/include/netsem \
  /usr/share/doc/netsem /etc/systemd/system/multi-user.target.wants/netsemd.service \
  /var/lib/systemd/deb-systemd-helper-enabled/netsemd.service.dsh-also \
  /var/lib/systemd/deb-systemd-helper-masked/netsemd.service; do
  [ -e "$path" ] || [ -L "$path" ] && left+=("$path")
done
test ${#left[@]} -eq 0 || fail "left after the purge: ${left[*]}"
! ldconfig_has || fail "the linker cache still has libnetsem.so.0.1 after the purge"
echo "deb_test: installed, served, linked against, removed and purged; nothing left"
