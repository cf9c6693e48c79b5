#!/usr/bin/env bash
# Installs the build into a scratch prefix, builds the consumer project
# against it with find_package(netsem) (the consumer sets no C++ standard:
# the target brings it), linking the static and the shared library, and, as a
# build without CMake would, with `pkg-config --cflags --libs netsem` (shared)
# and with libnetsem.a named by its path (static); runs all four, and checks
# which library each one loaded.
set -euo pipefail
build_dir="$1"
source_dir="$(cd "$(dirname "$0")" && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
fail() { echo "test_package: $*" >&2; exit 1; }
cmake --install "$build_dir" --prefix "$scratch/prefix" >/dev/null
# The programs, man pages, configuration and docs land where GNUInstallDirs
# says, under the prefix (the package's /etc and unit are
# not part of a plain install).
for path in sbin/netsemd bin/netsem share/man/man8/netsemd.8.gz share/man/man1/netsem.1.gz etc/netsem/netsem.ini \
  share/doc/netsem/copyright share/doc/netsem/README.md share/bash-completion/completions/netsem include/netsem/client.h; do
  test -e "$scratch/prefix/$path" || fail "cmake --install put no $path in the prefix"
done
cmake -S "$source_dir/consumer" -B "$scratch/build" -G Ninja -DCMAKE_PREFIX_PATH="$scratch/prefix" >/dev/null
cmake --build "$scratch/build" >/dev/null
"$scratch/build/consumer"
"$scratch/build/consumer_shared"
# The shared consumer loads the installed libnetsem.so (CMake's build rpath
# names its directory), the static one none.
grep -q "libnetsem\.so\.[0-9.]* => $scratch/prefix/" <<<"$(ldd "$scratch/build/consumer_shared")" ||
  fail "consumer_shared does not load the installed libnetsem.so: $(ldd "$scratch/build/consumer_shared")"
! grep -q libnetsem <<<"$(ldd "$scratch/build/consumer")" || fail "the static consumer loads libnetsem.so"

# pkg-config: the installed netsem.pc, found through PKG_CONFIG_PATH alone.
pc_file="$(find "$scratch/prefix" -name netsem.pc -print -quit)"
test -n "$pc_file" || fail "netsem.pc was not installed"
export PKG_CONFIG_PATH="$(dirname "$pc_file")"
test "$(pkg-config --modversion netsem)" = "$(sed -n 's/^Version: //p' "$pc_file")"
libdir="$(pkg-config --variable=libdir netsem)"
# shellcheck disable=SC2046  # the flags are meant to split
"${CXX:-c++}" -std=c++20 "$source_dir/consumer/main.cc" -o "$scratch/consumer-pc" $(pkg-config --cflags --libs netsem)
LD_LIBRARY_PATH="$libdir" "$scratch/consumer-pc"
grep -q "libnetsem\.so" <<<"$(LD_LIBRARY_PATH="$libdir" ldd "$scratch/consumer-pc")" || fail "pkg-config's link is not the shared library"
# shellcheck disable=SC2046
"${CXX:-c++}" -std=c++20 "$source_dir/consumer/main.cc" -o "$scratch/consumer-pc-static" $(pkg-config --cflags netsem) \
  "$libdir/libnetsem.a" -lspdlog -lfmt -lssl -lcrypto -pthread
"$scratch/consumer-pc-static"
