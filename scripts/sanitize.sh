#!/usr/bin/env bash
# Builds netsem with a sanitizer and runs the tests under it. On demand, not
# in CI (CI runs the fuzzers under AddressSanitizer and UBSan; a second full
# build would double its time).
#
# Usage: scripts/sanitize.sh [address|thread]
#   address  (default) AddressSanitizer, LeakSanitizer and UBSan, in
#            build-asan/: every test but the soak, so netsemd, the client
#            library and the CLI all run instrumented, over real sockets.
#   thread   ThreadSanitizer, in build-tsan/: the client library's and the
#            CLI's tests, where the library's I/O thread, its resolver thread
#            and the callers' threads meet (netsemd has one thread).
# Any report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

kind=${1:-address}
case $kind in
  address)
    dir=build-asan
    targets=()
    tests=(-LE soak)
    ;;
  thread)
    dir=build-tsan
    targets=(--target netsemd netsem client_test client_options_test local_semaphores_test resolver_test cli_test)
    tests=(-R '^(Client|ConfigFiles|Environment|FallbackPolicy|LocalSemaphores|Resolver|Cli)')
    ;;
  *)
    echo "usage: scripts/sanitize.sh [address|thread]" >&2
    exit 2
    ;;
esac

scripts/install-deps.sh
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNETSEM_SANITIZE="$kind" >/dev/null
cmake --build "$dir" "${targets[@]}"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
ctest --test-dir "$dir" --output-on-failure --parallel 2 --timeout 600 "${tests[@]}"
