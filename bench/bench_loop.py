"""The measuring loop that bench/python_bench.py and bench/etcd_bench.py share.

Each script has its own Worker (one client on one thread: a ``thread``, a
``close()``, and ``ops``, ``latencies_us``, ``errors``, ``first_error``,
``queued`` that it counts while ``measuring`` is set); this module runs them
through the same window (start, warm up, measure, stop, join, close), reads
the servers' and its own CPU around the window, and writes the result in
netsem-bench's --json form, keys in netsem-bench's order, for
bench/compare_report.py.
"""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Worker(Protocol):
    thread: threading.Thread
    ops: int
    queued: int
    errors: int
    first_error: str
    latencies_us: list[float]

    def close(self) -> None: ...


def process_cpu_us(pids: list[int]) -> tuple[int, int] | None:
    """(user + system, system) CPU microseconds of the processes, summed, from /proc."""
    if not pids:
        return None
    total = system = 0
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = text[text.rfind(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) * 1_000_000 // ticks
        system += int(fields[12]) * 1_000_000 // ticks
    return total, system


def self_cpu_us() -> int:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return int((usage.ru_utime + usage.ru_stime) * 1_000_000)


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


@dataclass
class Window:
    """What one measured window saw."""

    workers: list[Worker]
    warmup: float
    measured: float
    server_cpu: tuple[int, int] | None  # (all, system) microseconds in the window
    client_cpu: int


def measure(
    workers: list[Worker],
    measuring: threading.Event,
    stop: threading.Event,
    warmup: float,
    seconds: float,
    server_pids: list[int],
) -> Window:
    """Starts the workers, warms up, measures for ``seconds``, then stops, joins and closes them."""
    for worker in workers:
        worker.thread.start()
    time.sleep(warmup)
    cpu_before, self_before = process_cpu_us(server_pids), self_cpu_us()
    measuring.set()
    began = time.perf_counter()
    time.sleep(seconds)
    measuring.clear()
    measured = time.perf_counter() - began
    cpu_after, self_after = process_cpu_us(server_pids), self_cpu_us()
    stop.set()
    for worker in workers:
        worker.thread.join(60)
        worker.close()
    server_cpu = None
    if cpu_before is not None and cpu_after is not None:
        server_cpu = (cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1])
    return Window(workers, warmup, measured, server_cpu, self_after - self_before)


def result(
    window: Window, *, target: str, scenario: str, op: str, limit: int | None, notes: list[str]
) -> dict[str, object]:
    """The window's outcome in netsem-bench's --json form."""
    workers = window.workers
    ops = sum(worker.ops for worker in workers)
    latencies = sorted(value for worker in workers for value in worker.latencies_us)
    measured = window.measured

    def per_op(value: int | None) -> float | None:
        return round(value / ops, 3) if value is not None and ops else None

    server_cpu, server_system = window.server_cpu if window.server_cpu is not None else (None, None)
    return {
        "target": target,
        "scenario": scenario,
        "clients": len(workers),
        "pipeline": 1,
        "names": 1,
        "seconds": round(measured, 3),
        "warmup": window.warmup,
        "op": op,
        "ops": ops,
        "ops_per_s": round(ops / measured, 1) if measured > 0 else 0.0,
        "latency_us": {
            "p50": round(percentile(latencies, 0.5), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "p999": round(percentile(latencies, 0.999), 1),
            "max": round(latencies[-1], 1) if latencies else 0.0,
            "mean": round(statistics.fmean(latencies), 1) if latencies else 0.0,
            "samples": len(latencies),
        },
        "queued": sum(worker.queued for worker in workers),
        "errors": sum(worker.errors for worker in workers),
        "first_error": next((worker.first_error for worker in workers if worker.first_error), ""),
        "server_cpu_us_per_op": per_op(server_cpu),
        "server_system_cpu_us_per_op": per_op(server_system),
        "client_cpu_us_per_op": per_op(window.client_cpu),
        "server_rss_before": None,
        "server_rss_after": None,
        "per": None,
        "bytes_per": None,
        "limit": limit,
        "queued_answers": None,
        "notes": notes,
    }
