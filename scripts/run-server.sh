#!/usr/bin/env bash
# Installs what is needed, builds netsemd and starts it in the foreground on
# its embedded defaults (127.0.0.1:53559, data under ./var/netsem). Extra
# arguments go to netsemd, e.g. `scripts/run-server.sh --config etc/netsem.ini`.
# netsemd logs where its web page is: `HTTP on http://127.0.0.1:53560/`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target netsemd
exec build/src/server/netsemd "$@"
