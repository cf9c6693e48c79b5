#!/usr/bin/env python3
"""cycle1 and contended through the Python client, for bench/compare.sh.

The same two scenarios as netsem-bench (bench/bench_options.cc), driven by
``netsem.client.Client`` (clients/python) instead of netsem-bench's raw
wire, so that the report shows what the Python client costs next to them:

  cycle1     1 client: acquire then release of one name, back to back.
  contended  --clients clients (default 64) on --name (limit --limit,
             default 10): acquire (queued is fine), hold for 0, release.

An op is one cycle (acquire + release); latency is the acquire's, from the
call to its return. Each client is a thread with its own Client (its own
connection and session, as netsem-bench's clients have), so that the server
does the same work per op as for the other systems. contended's name is
created with --limit when the server does not have it, and deleted after.

Prints one JSON object in netsem-bench's --json form (target "python"), so
that bench/compare_report.py reads it beside the others; the server's CPU
comes from /proc/<--server-pid>/stat, as netsem-bench reads it. Exits 1
when a run had errors (the JSON is still printed), 2 on bad arguments.

Usage: python_bench.py --port P [--host H] [--server-pid PID]
                       [--scenario cycle1|contended] [--seconds S] [--warmup S]
                       [--clients N] [--name NAME] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients/python"))

import bench_loop  # noqa: E402
from netsem import errors  # noqa: E402
from netsem._options import ClientOptions, FallbackPolicy  # noqa: E402
from netsem.client import Client  # noqa: E402

CYCLE1_NAME = "bench.py.cycle1"


class Worker:
    """One client: its own Client, cycling on ``name`` until told to stop."""

    def __init__(self, options: ClientOptions, name: str, measuring: threading.Event, stop: threading.Event) -> None:
        self.client = Client(options=options)
        self.name = name
        self.measuring = measuring
        self.stop = stop
        self.ops = self.queued = 0
        self.latencies_us: list[float] = []
        self.errors = 0
        self.first_error = ""
        self.thread = threading.Thread(target=self.run, name=f"bench {name}", daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            counted = self.measuring.is_set()
            started = time.perf_counter()
            try:
                permit = self.client.acquire(self.name, timeout=30)
                granted = time.perf_counter()
                permit.release()
            except errors.NetsemError as error:
                if counted:
                    self.errors += 1
                    self.first_error = self.first_error or f"{type(error).__name__}: {error}"
                time.sleep(0.01)
                continue
            if counted and self.measuring.is_set():
                self.ops += 1
                self.latencies_us.append((granted - started) * 1e6)

    def close(self) -> None:
        self.client.close()


def run(args: argparse.Namespace) -> dict[str, object]:
    options = ClientOptions(
        servers=[f"{args.host}:{args.port}"], label="python-bench", fallback=FallbackPolicy.parse("fail")
    )
    contended = args.scenario == "contended"
    clients = args.clients if args.clients is not None else (64 if contended else 1)
    name = args.name if contended else CYCLE1_NAME
    notes = [f"through the Python client (netsem.client.Client), one Client and thread per client, Python {sys.version.split()[0]}"]
    created = False
    control = Client(options=options)
    limit: int | None = None
    try:
        if contended:
            try:
                info = control.get(name)
                limit = info.max
                if info.max != args.limit:
                    notes.append(f"{name} is {info.kind} with limit {info.max}, not {args.limit}")
            except errors.NotFound:
                control.create(name, args.limit, args.limit)
                created, limit = True, args.limit
                notes.append(f"{name} was not on the server: created with limit {args.limit} (deleted after)")
        measuring, stop = threading.Event(), threading.Event()
        workers = [Worker(options, name, measuring, stop) for _ in range(clients)]
        pids = [args.server_pid] if args.server_pid else []
        window = bench_loop.measure(workers, measuring, stop, args.warmup, args.seconds, pids)
    finally:
        if created:
            try:
                control.delete(name)
            except errors.NetsemError as error:
                notes.append(f"could not delete {name} after the run: {error}")
        control.close()

    return bench_loop.result(
        window,
        target="python",
        scenario=args.scenario,
        op="cycle (acquire + release) through the Python client",
        limit=limit,
        notes=notes,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, default=None)
    parser.add_argument("--scenario", choices=["cycle1", "contended"], default="cycle1")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--name", default="bench.contended")
    parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0 or (args.clients is not None and args.clients < 1) or args.limit < 1:
        parser.error("--seconds must be > 0, --warmup >= 0, --clients and --limit >= 1")
    result = run(args)
    print(json.dumps(result, separators=(",", ":")))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
