#!/usr/bin/env python3
"""cycle1 and contended against etcd's counting-semaphore recipe, for bench/compare.sh --cluster.

etcd has no semaphore; its users build one from keys, leases, revisions and
watches, as etcd's own Go mutex (clientv3/concurrency.Mutex) does for a limit
of 1. This is that recipe with a limit of N, spoken over etcd's v3 HTTP/JSON
gateway (POST /v3/...; standard library only):

  session  each client grants one lease (TTL 60 s, kept alive every 20 s
           between cycles), as concurrency.NewSession does; its key is
           <name>/<lease id in hex>.
  acquire  PUT its key with the lease: the revision of that write is the
           client's place in the queue (its create revision). Then RANGE the
           prefix for the keys created before it (max_create_revision, sorted
           by create revision descending, limit N, keys only, a linearizable
           read): fewer than N of them, and it holds a permit. Otherwise the
           N-th key before it cannot have been granted after it (the order is
           FIFO) and must go first: it WATCHes that key from the range's
           revision + 1 until a DELETE, then ranges again (the generalisation
           of the mutex's waitDeletes: one waiter woken per release, no herd).
  release  DELETE its key (the lease would delete it when the client dies).

Grants are FIFO by create revision and never exceed N: the keys before a
holder are fewer than N, at a linearizable read after its own write.

  cycle1     1 client: acquire then release of one name, back to back.
  contended  --clients clients (default 64) on --name with limit --limit
             (default 10): acquire (queued is fine), hold for 0, release.

An op is one cycle; latency is the acquire's, from the PUT to the read that
finds it among the first N. Each client is a thread with its own HTTP
connection (and one more for a watch while it waits). Prints one JSON object
in netsem-bench's --json form (target "etcd"); the server CPU is the sum over
--server-pid's comma-separated pids (an etcd cluster's members). Exits 1 when
a run had errors (the JSON is still printed), 2 on bad arguments.

Usage: etcd_bench.py --endpoint HOST:PORT [--server-pid PID[,PID...]]
                     [--scenario cycle1|contended] [--seconds S] [--warmup S]
                     [--clients N] [--name NAME] [--limit N]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import sys
import threading
import time

import bench_loop

LEASE_TTL_S = 60
KEEPALIVE_EVERY_S = 20


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def prefix_end(prefix: str) -> str:
    """The range end that covers every key starting with ``prefix``."""
    raw = prefix.encode()
    return base64.b64encode(raw[:-1] + bytes([raw[-1] + 1])).decode()


class EtcdError(Exception):
    pass


class Gateway:
    """One keep-alive HTTP connection to etcd's JSON gateway."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.connection = http.client.HTTPConnection(host, port, timeout=30)

    def call(self, path: str, body: dict) -> dict:
        payload = json.dumps(body)
        try:
            self.connection.request("POST", path, payload, {"Content-Type": "application/json"})
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.connection.close()
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            raise EtcdError(f"{path}: {error}") from error
        if response.status != 200:
            raise EtcdError(f"{path}: HTTP {response.status}: {data[:200]!r}")
        return json.loads(data)

    def wait_delete(self, key: str, revision: int, stop: threading.Event) -> None:
        """Watches ``key`` from ``revision`` on a connection of its own until a DELETE of it."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            body = {"create_request": {"key": b64(key), "start_revision": revision, "filters": ["NOPUT"]}}
            connection.request("POST", "/v3/watch", json.dumps(body), {"Content-Type": "application/json"})
            response = connection.getresponse()
            if response.status != 200:
                raise EtcdError(f"/v3/watch: HTTP {response.status}")
            while not stop.is_set():
                try:
                    line = response.readline()
                except TimeoutError:
                    continue
                if not line:
                    raise EtcdError("/v3/watch: the stream ended")
                message = json.loads(line).get("result", {})
                if any(event.get("type") == "DELETE" for event in message.get("events", [])):
                    return
        except (OSError, http.client.HTTPException) as error:
            raise EtcdError(f"/v3/watch: {error}") from error
        finally:
            connection.close()


class Worker:
    """One client: a lease, a key, cycling on the semaphore until told to stop."""

    def __init__(self, args: argparse.Namespace, measuring: threading.Event, stop: threading.Event) -> None:
        host, _, port = args.endpoint.rpartition(":")
        self.gateway = Gateway(host, int(port))
        self.prefix = args.name + "/"
        self.limit = args.limit
        self.measuring, self.stop = measuring, stop
        self.ops = self.queued = self.errors = 0
        self.first_error = ""
        self.latencies_us: list[float] = []
        self.lease = int(self.gateway.call("/v3/lease/grant", {"TTL": LEASE_TTL_S})["ID"])
        self.kept_alive = time.monotonic()
        self.key = f"{self.prefix}{self.lease:x}"
        self.thread = threading.Thread(target=self.run, name=f"etcd {self.key}", daemon=True)

    def acquire(self) -> None:
        put = self.gateway.call("/v3/kv/put", {"key": b64(self.key), "value": b64("1"), "lease": self.lease})
        created = int(put["header"]["revision"])
        waited = False
        while not self.stop.is_set():
            ahead = self.gateway.call(
                "/v3/kv/range",
                {
                    "key": b64(self.prefix),
                    "range_end": prefix_end(self.prefix),
                    "max_create_revision": created - 1,
                    "sort_order": "DESCEND",
                    "sort_target": "CREATE",
                    "limit": self.limit,
                    "keys_only": True,
                },
            )
            kvs = ahead.get("kvs", [])
            if len(kvs) < self.limit:
                return
            if not waited:
                waited = True
                self.queued += self.measuring.is_set()
            blocker = base64.b64decode(kvs[-1]["key"]).decode()
            self.gateway.wait_delete(blocker, int(ahead["header"]["revision"]) + 1, self.stop)

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                if time.monotonic() - self.kept_alive > KEEPALIVE_EVERY_S:
                    self.gateway.call("/v3/lease/keepalive", {"ID": self.lease})
                    self.kept_alive = time.monotonic()
                self.acquire()
                granted = time.perf_counter()
                self.gateway.call("/v3/kv/deleterange", {"key": b64(self.key)})
            except EtcdError as error:
                if self.measuring.is_set():
                    self.errors += 1
                    self.first_error = self.first_error or str(error)
                time.sleep(0.01)
                continue
            # A cycle counts when it ends in the window (as netsem-bench's do):
            # contended's cycles last longer than a short window.
            if self.measuring.is_set():
                self.ops += 1
                self.latencies_us.append((granted - started) * 1e6)

    def close(self) -> None:
        try:
            self.gateway.call("/v3/lease/revoke", {"ID": self.lease})
        except EtcdError:
            pass


def run(args: argparse.Namespace) -> dict[str, object]:
    contended = args.scenario == "contended"
    clients = args.clients if args.clients is not None else (64 if contended else 1)
    if not contended:
        args.name = "bench.etcd.cycle1"
    pids = [int(pid) for pid in args.server_pid.split(",")] if args.server_pid else []
    notes = [
        f"etcd's semaphore recipe (a leased key per holder, FIFO by create revision, a watch on the N-th key ahead) "
        f"over the v3 JSON gateway; one thread and HTTP connection per client, Python {sys.version.split()[0]}"
    ]
    measuring, stop = threading.Event(), threading.Event()
    workers = [Worker(args, measuring, stop) for _ in range(clients)]
    window = bench_loop.measure(workers, measuring, stop, args.warmup, args.seconds, pids)
    return bench_loop.result(
        window,
        target="etcd",
        scenario=args.scenario,
        op="cycle (acquire + release) of etcd's semaphore recipe",
        limit=args.limit if contended else 1,
        notes=notes,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True, help="HOST:PORT of an etcd member's client URL")
    parser.add_argument("--server-pid", default="", help="PID[,PID...]: etcd's processes, for their CPU per op")
    parser.add_argument("--scenario", choices=["cycle1", "contended"], default="cycle1")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--name", default="bench.contended")
    parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0 or (args.clients is not None and args.clients < 1) or args.limit < 1:
        parser.error("--seconds must be > 0, --warmup >= 0, --clients and --limit >= 1")
    if not args.endpoint.rpartition(":")[2].isdigit():
        parser.error("--endpoint takes HOST:PORT")
    if args.scenario == "cycle1":
        args.limit = 1
    try:
        result = run(args)
    except EtcdError as error:
        print(f"etcd_bench.py: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, separators=(",", ":")))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
