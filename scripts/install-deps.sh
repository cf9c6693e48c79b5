#!/usr/bin/env bash
# Installs, from Debian 12's packages, everything netsem needs to build, test
# and fuzz. Safe to run again: apt-get skips what is already there.
set -euo pipefail
packages=(
  cmake ninja-build g++ pkg-config  # the build
  libasio-dev                       # standalone Asio: the server's event loop and sockets
  libcli11-dev                      # CLI11: command lines of netsemd and netsem
  libspdlog-dev libfmt-dev          # spdlog (with fmt): logging
  zlib1g-dev                        # zlib's crc32: checksums of journal records
  nlohmann-json3-dev                # nlohmann-json: the STATS line's JSON (src/stats)
  libmicrohttpd-dev                 # GNU libmicrohttpd: netsemd's HTTP listener (src/http; docs/operations.md)
  libgtest-dev libgmock-dev         # GoogleTest: unit and integration tests
  libbenchmark-dev                  # Google Benchmark: micro-benchmarks
  clang libclang-rt-14-dev          # clang + libFuzzer runtime: the fuzz targets
  clang-format                      # the one formatting style (scripts/check-format.sh)
  netcat-openbsd                    # nc, to talk to the server by hand
  redis-server                      # Redis: the peer in the benchmark comparison, and its smoke test
  etcd-server                       # etcd: the peer of the cluster benchmark (bench/compare.sh --cluster), and its smoke test
  python3                           # bench/compare_report.py, the comparison's report (and its smoke test)
  python3-pytest python3-venv       # the Python client's tests (clients/python), and its install into a clean venv
  python3-wheel-whl                 # wheel for that venv: setuptools 66 needs it to build the package offline
  chromium                          # headless Chromium: tests/web loads the web page and reads its DOM
  prometheus                        # promtool checks GET /metrics; a real Prometheus scrapes netsemd in tests/metrics
  libsodium-dev                     # libsodium: salted Argon2id hashes of AUTH tokens (src/auth; docs/security.md)
  libssl-dev                        # OpenSSL: TLS in netsemd (asio::ssl) and libnetsem (docs/security.md, "TLS")
  openssl                           # the openssl command: tests/tls makes its CA and certificates with it, and talks s_client
  libraft-dev                       # canonical's Raft (libraft 0.15): the consensus layer of replicated netsemd (src/raft; docs/replication.md)
  libuv1-dev                        # libuv: the event loop libraft's I/O backend (raft_uv) runs on, one per RaftNode thread
  libsystemd-dev                    # libsystemd: netsemd's sd_notify (readiness, reload, stop, watchdog) under Type=notify
  systemd                           # systemd-analyze: tests/ops checks etc/systemd/netsemd.service
  dpkg-dev file binutils groff-base # the Debian package: cpack's dependency list (dpkg-shlibdeps, file, readelf), man pages' check
  lintian                           # Debian's package checker, run on the .deb by tests/package/deb_test.sh
  debootstrap systemd-container     # tests/package/systemd_test.sh (on demand): the package on a Debian 12 booted by systemd-nspawn
)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
