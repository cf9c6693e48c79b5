#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and
# runs each for the given number of seconds (default 20) on a corpus kept in
# build-fuzz/corpus/<target>. Run longer by hand: `scripts/fuzz.sh 3600`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DNETSEM_BUILD_FUZZERS=ON -DNETSEM_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz --target codec_fuzz journal_fuzz table_fuzz replication_fuzz
for target in codec_fuzz journal_fuzz table_fuzz replication_fuzz; do
  corpus="build-fuzz/corpus/$target"
  mkdir -p "$corpus"
  echo "== $target: ${seconds}s"
  "build-fuzz/tests/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 "$corpus" 2>&1 | tail -n 4
done
echo "fuzzers: no crash in ${seconds}s each"
