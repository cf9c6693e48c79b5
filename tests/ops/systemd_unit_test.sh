#!/usr/bin/env bash
# The systemd unit etc/systemd/netsemd.service: `systemd-analyze verify`
# accepts it without a word (an unknown or misspelt key is only a warning
# there, so any output fails the test), it has the settings the product
# promises (notify readiness, reload by signal, a state directory, a
# watchdog, hardening), and the flags of its ExecStart line are ones the
# built netsemd takes: they are run with --check-config against a temporary
# directory. Exits 77 (skipped) without systemd-analyze.
# Usage: systemd_unit_test.sh SOURCE_DIR NETSEMD
set -euo pipefail
source_dir=$1
netsemd=$2
unit=$source_dir/etc/systemd/netsemd.service

if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze is not installed (scripts/install-deps.sh installs systemd)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# verify needs the ExecStart binary to exist: the built one, in a copy.
sed "s#^ExecStart=/usr/sbin/netsemd #ExecStart=$netsemd #" "$unit" >"$work/netsemd.service"
grep -q "^ExecStart=$netsemd " "$work/netsemd.service" || fail "ExecStart does not start /usr/sbin/netsemd"
# --man=no: the man page netsemd(8) of Documentation= is installed by the
# package, not present in a build tree.
if ! output=$(cd "$work" && systemd-analyze verify --man=no "$work/netsemd.service" 2>&1); then
  fail "systemd-analyze verify failed: $output"
elif [ -n "$output" ]; then
  fail "systemd-analyze verify warned: $output"
fi

# The settings the unit is for (one per line: key=value as written).
for line in Type=notify "ExecReload=/bin/sh -c 'kill -HUP \$MAINPID'" Restart=on-failure DynamicUser=yes \
  StateDirectory=netsem WatchdogSec=30s NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes \
  PrivateTmp=yes PrivateDevices=yes 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
  SystemCallFilter=@system-service LimitNOFILE=1048576; do
  grep -qxF "$line" "$unit" || fail "the unit lacks the line '$line'"
done

# Every other program the unit runs is one every Debian has: a program of an
# Essential package. `ExecReload=/bin/kill ...` failed on a minimal Debian 12
# (203/EXEC, found by tests/package/systemd_test.sh): /bin/kill is procps's,
# which debootstrap's minbase and container images lack; sh (dash) is
# Essential and has kill built in.
if command -v dpkg-query >/dev/null; then
  while read -r program; do
    [ "$program" = /usr/sbin/netsemd ] && continue
    owner=$(dpkg -S "$program" 2>/dev/null | grep -v '^diversion by' | head -1 | cut -d: -f1) || true
    if [ -z "$owner" ]; then
      fail "$program, which the unit runs, belongs to no installed package"
    elif [ "$(dpkg-query -W -f='${Essential}' "$owner")" != yes ]; then
      fail "$program, which the unit runs, is $owner's, not an Essential package's: a minimal Debian may lack it"
    fi
  done < <(sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\([^ ]*\).*/\1/p' "$unit")
else
  echo "no dpkg-query: the programs of the unit's Exec lines are not checked"
fi

# The ExecStart flags as netsemd reads them: the installed paths mapped to
# the source tree's example configuration and a temporary state directory.
exec_start=$(sed -n 's#^ExecStart=/usr/sbin/netsemd ##p' "$unit")
read -r -a args <<<"$exec_start"
mapped=()
for arg in "${args[@]}"; do
  case $arg in
    /etc/netsem/netsem.ini) mapped+=("$source_dir/etc/netsem.ini") ;;
    /var/lib/netsem) mapped+=("$work/state") ;;
    *) mapped+=("$arg") ;;
  esac
done
if ! output=$("$netsemd" "${mapped[@]}" --check-config 2>&1); then
  fail "netsemd ${mapped[*]} --check-config: $output"
elif ! grep -q "data_dir $work/state" <<<"$output"; then
  fail "--data-dir of ExecStart is not the data directory: $output"
fi

# The exposure score systemd gives the hardening, for the record.
if score=$(systemd-analyze security --offline=yes "$work/netsemd.service" 2>/dev/null | grep 'Overall exposure'); then
  echo "$score"
fi
[ "$failures" -eq 0 ] && echo "PASS: etc/systemd/netsemd.service"
[ "$failures" -eq 0 ]
