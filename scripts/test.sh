#!/usr/bin/env bash
# Installs what is needed, checks the formatting, builds everything and runs
# every test: the unit and integration tests (CTest), then each fuzzer for a
# bounded time.
# FUZZ_SECONDS (default 20) sets how long each fuzzer runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/check-format.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build
ctest --test-dir build --output-on-failure --parallel 2 --timeout 300
scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
