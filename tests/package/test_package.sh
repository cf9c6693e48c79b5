#!/usr/bin/env bash
# Installs the build into a scratch prefix, builds the consumer project
# against it with find_package(netsem) (the consumer sets no C++ standard:
# the target brings it) and, as a build without CMake would, with
# `pkg-config --cflags --libs netsem`; runs both.
set -euo pipefail
build_dir="$1"
source_dir="$(cd "$(dirname "$0")" && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cmake --install "$build_dir" --prefix "$scratch/prefix" >/dev/null
cmake -S "$source_dir/consumer" -B "$scratch/build" -G Ninja -DCMAKE_PREFIX_PATH="$scratch/prefix" >/dev/null
cmake --build "$scratch/build" >/dev/null
"$scratch/build/consumer"

# pkg-config: the installed netsem.pc, found through PKG_CONFIG_PATH alone.
pc_file="$(find "$scratch/prefix" -name netsem.pc -print -quit)"
test -n "$pc_file" || { echo "netsem.pc was not installed" >&2; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc_file")"
test "$(pkg-config --modversion netsem)" = "$(sed -n 's/^Version: //p' "$pc_file")"
# shellcheck disable=SC2046  # the flags are meant to split
"${CXX:-c++}" -std=c++20 "$source_dir/consumer/main.cc" -o "$scratch/consumer-pc" $(pkg-config --cflags --libs netsem)
"$scratch/consumer-pc"
