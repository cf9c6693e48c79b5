#!/usr/bin/env python3
"""The report of bench/compare.sh: medians of netsem-bench's JSON runs.

Reads the JSON files that bench/compare.sh keeps (one `netsem-bench --json`
object per file, named `repNN-SCENARIO-SYSTEM.json` for the interleaved
repetitions and `once-SCENARIO-SYSTEM.json` for the scenarios run once) and
prints, in markdown:

- a table per scenario and system: runs, median ops/s with min-max, medians
  of the acquire's p50 and p99 latency, median server CPU per op with min-max,
  errors;
- the memory figures of the sessions and names scenarios;
- the ratio of netsemd to the floor (and to Redis) in each repetition, to show
  how much of the spread is the machine's, and of the Python client
  (bench/python_bench.py, target "python": cycle1 and contended against
  netsemd) to netsem-bench's own clients;
- last, one line computed from the medians, exactly as issue 5 defines it:

  ratios: contended_vs_floor=A spread_vs_floor=B cycle1_vs_floor=C
  cpu_vs_floor=D contended_vs_redis=E spread_vs_redis=F cpu_vs_redis=G

  (on one line): netsemd's cycles/s over the floor's or Redis's, and for CPU
  the floor's (or Redis's) server CPU per contended cycle over netsemd's, so
  that above 1 is always netsemd doing better. A ratio whose runs are missing
  prints n/a. When the runs include contended against netsemd with `OPTION
  queued off` (compare.sh --queued off; their JSON says "queued_answers":
  "off"), it shows as the scenario "contended, queued off" and the line ends
  with contended_qoff_vs_floor=H cpu_qoff_vs_floor=I, the same two ratios
  for it (issue 11: at least 0.85, and at least 1/1.3 = 0.77). When the runs
  include netsemd's TLS port (compare.sh's system "netsemtls": cycle1 and
  contended; their JSON says "tls": true), the line ends with
  cycle1_tls_vs_plain=J contended_tls_vs_plain=K: TLS's cycles/s over plain
  TCP's on the same netsemd (issue 15). When the runs include compare.sh
  --cluster's systems (files named ...-netsemsync.json: a single netsemd with
  `fsync = always`; ...-cluster.json: three netsemd on the replicated log;
  target "etcd": etcd's semaphore recipe, bench/etcd_bench.py), the line ends
  with cluster_vs_single=L cluster_vs_etcd=M: the cluster's contended cycles/s
  over the fsync-always single server's and over etcd's (issue 16: at least
  0.3 and 20), and, when they ran the durable scenario (WAIT and POST of a
  created semaphore, which the single server journals and syncs where it
  journals nothing of contended's grants), cluster_vs_single_durable=N: the
  cluster's durable cycles/s over the fsync-always single server's. With
  compare.sh --cluster's commitfloor-repNN.json files (netsem-commit-floor:
  the disk's floor under a commit), a table of that floor and the ceiling
  it sets on contended, and disk_ceiling_vs_single=P: that ceiling over the
  fsync-always single server's contended cycles/s (what the cluster could
  reach if nothing but the disk cost time).

Usage: compare_report.py DIR_OR_FILE...   (standard library only)
"""

import json
import os
import re
import statistics
import sys

QUEUED_OFF = "contended, queued off"
SCENARIOS = ["cycle1", "contended", QUEUED_OFF, "durable", "spread", "pipelined", "ace", "sessions", "names"]
MEMORY_SCENARIOS = {"sessions", "names"}
SYSTEMS = ["netsem", "netsemtls", "python", "floor", "redis", "netsemsync", "cluster", "etcd"]
# Systems netsem-bench's JSON cannot name (its target is "netsem"): the file
# name's says which netsemd it was (bench/compare.sh --cluster).
SYSTEMS_FROM_FILE = {"netsemsync", "cluster"}
# "python" is netsemd too, driven through the Python client (bench/python_bench.py);
# "netsemtls" is netsemd's TLS port (netsem-bench --tls-port; the JSON says "tls": true).
SYSTEM_LABEL = {"netsem": "netsemd", "netsemtls": "netsemd over TLS", "python": "Python client", "floor": "floor",
                "redis": "Redis", "netsemsync": "netsemd, fsync always", "cluster": "3 netsemd (Raft), on the leader",
                "etcd": "etcd recipe, 3 members"}
FILE_NAME = re.compile(r"^(rep(\d+)|once)-[a-z0-9]+-([a-z0-9]+)\.json$")
# netsem-commit-floor's JSON, one per repetition (compare.sh --cluster).
COMMIT_FLOOR_NAME = re.compile(r"^commitfloor-rep(\d+)\.json$")


def load(paths):
    """Returns [(rep or None, run)] from the JSON files under `paths`; a run of
    a system in SYSTEMS_FROM_FILE gets it as "system"."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            files += [os.path.join(path, f) for f in sorted(os.listdir(path)) if FILE_NAME.match(f)]
        else:
            files.append(path)
    runs = []
    for file in files:
        with open(file, encoding="utf-8") as f:
            text = f.read().strip()
        if not text:
            continue
        run = json.loads(text)
        match = FILE_NAME.match(os.path.basename(file))
        rep = int(match.group(2)) if match and match.group(2) is not None else None
        if match and match.group(3) in SYSTEMS_FROM_FILE:
            run["system"] = match.group(3)
        runs.append((rep, run))
    return runs


def load_commit_floors(paths):
    """Returns {rep: netsem-commit-floor's JSON} from the directories in `paths`."""
    floors = {}
    for path in paths:
        if not os.path.isdir(path):
            continue
        for name in sorted(os.listdir(path)):
            match = COMMIT_FLOOR_NAME.match(name)
            if match:
                with open(os.path.join(path, name), encoding="utf-8") as f:
                    floors[int(match.group(1))] = json.load(f)
    return floors


def number(value, digits=0):
    if value is None:
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def latency(value):
    """Microseconds with three significant figures or so."""
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def median_range(values, digits=0):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    middle = number(statistics.median(values), digits)
    if len(values) == 1:
        return middle
    return f"{middle} ({number(min(values), digits)}–{number(max(values), digits)})"


def median_of(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def mib(value):
    return "–" if value is None else f"{value / 1048576:,.1f} MiB"


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) >= 2 else 2
    runs = load(argv[1:])
    groups = {}
    for rep, run in runs:
        scenario = run["scenario"]
        if run.get("queued_answers") == "off":
            scenario += ", queued off"
        system = run.get("system") or run["target"] + ("tls" if run.get("tls") else "")
        groups.setdefault((scenario, system), []).append((rep, run))

    def ordered(keys):
        def rank(key):
            scenario, system = key
            s = SCENARIOS.index(scenario) if scenario in SCENARIOS else len(SCENARIOS)
            t = SYSTEMS.index(system) if system in SYSTEMS else len(SYSTEMS)
            return (s, scenario, t, system)

        return sorted(keys, key=rank)

    print("| scenario | system | runs | ops/s: median (min–max) | acquire p50 (µs) | acquire p99 (µs) "
          "| server CPU µs/op: median (min–max) | of which kernel | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for key in ordered(groups):
        scenario, system = key
        if scenario in MEMORY_SCENARIOS:
            continue
        group = [run for _, run in groups[key]]
        errors = sum(run["errors"] for run in group)
        print(f"| {scenario} | {SYSTEM_LABEL.get(system, system)} | {len(group)} "
              f"| {median_range([r['ops_per_s'] for r in group])} "
              f"| {latency(median_of([r['latency_us']['p50'] for r in group]))} "
              f"| {latency(median_of([r['latency_us']['p99'] for r in group]))} "
              f"| {median_range([r['server_cpu_us_per_op'] for r in group], 2)} "
              f"| {number(median_of([r.get('server_system_cpu_us_per_op') for r in group]), 2)} "
              f"| {errors}{' (' + group[0]['first_error'] + ')' if errors and group[0]['first_error'] else ''} |")

    memory = [key for key in ordered(groups) if key[0] in MEMORY_SCENARIOS]
    if memory:
        print()
        print("| scenario | system | items | RSS before | RSS after | bytes per item | items/s "
              "| server CPU µs/item | errors |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for key in memory:
            for _, run in groups[key]:
                items = run["clients"] if run["scenario"] == "sessions" else run["names"]
                per = run.get("per") or "item"
                print(f"| {run['scenario']} | {SYSTEM_LABEL.get(run['target'], run['target'])} "
                      f"| {number(items)} {per}s | {mib(run['server_rss_before'])} | {mib(run['server_rss_after'])} "
                      f"| {number(run['bytes_per'])} | {number(run['ops_per_s'])} "
                      f"| {number(run['server_cpu_us_per_op'], 2)} | {run['errors']} |")

    def medians(scenario, system, field):
        group = [run for _, run in groups.get((scenario, system), [])]
        return median_of([field(run) for run in group])

    def ratio(numerator, denominator):
        if numerator is None or denominator is None or denominator == 0:
            return None
        return numerator / denominator

    def ops(scenario, system):
        return medians(scenario, system, lambda r: r["ops_per_s"])

    def cpu(scenario, system):
        return medians(scenario, system, lambda r: r["server_cpu_us_per_op"])

    # Paired ratios: netsemd and the other system in the same repetition.
    paired = []
    for other in ("floor", "redis"):
        for scenario in ("cycle1", "contended", QUEUED_OFF, "spread", "pipelined"):
            ours = {rep: run for rep, run in groups.get((scenario, "netsem"), []) if rep is not None}
            # The other systems have no QUEUED line to turn off: their contended.
            their_scenario = "contended" if scenario == QUEUED_OFF else scenario
            theirs = {rep: run for rep, run in groups.get((their_scenario, other), []) if rep is not None}
            reps = sorted(set(ours) & set(theirs))
            if not reps:
                continue
            values = [ratio(ours[r]["ops_per_s"], theirs[r]["ops_per_s"]) for r in reps]
            paired.append((f"{scenario} throughput, netsemd / {SYSTEM_LABEL[other]}", values))
            if scenario in ("contended", QUEUED_OFF):
                values = [ratio(theirs[r]["server_cpu_us_per_op"], ours[r]["server_cpu_us_per_op"])
                          if ours[r]["server_cpu_us_per_op"] and theirs[r]["server_cpu_us_per_op"] is not None
                          else None for r in reps]
                paired.append((f"{scenario} server CPU, {SYSTEM_LABEL[other]} / netsemd", values))
    # The Python client against netsem-bench's raw wire, on the same netsemd:
    # what the client library costs (above 1 would be the Python client faster).
    for scenario in ("cycle1", "contended"):
        ours = {rep: run for rep, run in groups.get((scenario, "python"), []) if rep is not None}
        theirs = {rep: run for rep, run in groups.get((scenario, "netsem"), []) if rep is not None}
        reps = sorted(set(ours) & set(theirs))
        if reps:
            values = [ratio(ours[r]["ops_per_s"], theirs[r]["ops_per_s"]) for r in reps]
            paired.append((f"{scenario} throughput, Python client / netsem-bench", values))
    # TLS against plain TCP on the same netsemd: what TLS costs.
    for scenario in ("cycle1", "contended"):
        ours = {rep: run for rep, run in groups.get((scenario, "netsemtls"), []) if rep is not None}
        theirs = {rep: run for rep, run in groups.get((scenario, "netsem"), []) if rep is not None}
        reps = sorted(set(ours) & set(theirs))
        if reps:
            values = [ratio(ours[r]["ops_per_s"], theirs[r]["ops_per_s"]) for r in reps]
            paired.append((f"{scenario} throughput, TLS / plain TCP", values))
            values = [ratio(ours[r]["server_cpu_us_per_op"], theirs[r]["server_cpu_us_per_op"])
                      if ours[r]["server_cpu_us_per_op"] and theirs[r]["server_cpu_us_per_op"] else None for r in reps]
            paired.append((f"{scenario} server CPU per op, TLS / plain TCP", values))
    # Issue 16: the cluster against the single server with fsync always and
    # against etcd's recipe, in the same repetition.
    for other in ("netsemsync", "etcd"):
        for scenario in ("cycle1", "contended", "durable"):
            ours = {rep: run for rep, run in groups.get((scenario, "cluster"), []) if rep is not None}
            theirs = {rep: run for rep, run in groups.get((scenario, other), []) if rep is not None}
            reps = sorted(set(ours) & set(theirs))
            if reps:
                values = [ratio(ours[r]["ops_per_s"], theirs[r]["ops_per_s"]) for r in reps]
                paired.append((f"{scenario} throughput, 3 netsemd / {SYSTEM_LABEL[other]}", values))
    # The disk's floor under a commit (bench/commit_floor.cc), measured on the
    # cluster's file system after each repetition, and the ceiling it sets on
    # contended: a permit turns at most once per commit.
    floors = load_commit_floors(argv[1:])
    if floors:
        reps = sorted(floors)
        first = floors[reps[0]]
        print()
        print(f"The disk's floor under a commit ({first['quorum']} of {first['replicas']} synced appends at once, "
              f"{first['method']}, {first['rounds']} rounds; bench/commit_floor.cc), in each repetition:")
        print()
        print("| figure | median (min–max) | by repetition |")
        print("|---|---:|---|")
        rows = [(f"{first['quorum']} of {first['replicas']} appends durable, p50 (µs)",
                 [floors[r]["quorum_append_us"]["p50"] for r in reps], 0),
                (f"{first['quorum']} of {first['replicas']} appends durable, p99 (µs)",
                 [floors[r]["quorum_append_us"]["p99"] for r in reps], 0),
                ("one append alone, p50 (µs)", [floors[r]["lone_append_us"]["p50"] for r in reps], 0),
                (f"contended's ceiling: {first['limit']} permits / the p50 above (cycles/s)",
                 [floors[r]["ceiling_cycles_per_s"] for r in reps], 0)]
        for label, values, digits in rows:
            print(f"| {label} | {median_range(values, digits)} | {' '.join(number(v) for v in values)} |")
    if paired:
        print()
        print("| ratio in each repetition (same rep, back to back) | median (min–max) | by repetition |")
        print("|---|---:|---|")
        for label, values in paired:
            shown = " ".join("n/a" if v is None else f"{v:.2f}" for v in values)
            print(f"| {label} | {median_range(values, 2)} | {shown} |")

    figures = [
        ("contended_vs_floor", ratio(ops("contended", "netsem"), ops("contended", "floor"))),
        ("spread_vs_floor", ratio(ops("spread", "netsem"), ops("spread", "floor"))),
        ("cycle1_vs_floor", ratio(ops("cycle1", "netsem"), ops("cycle1", "floor"))),
        ("cpu_vs_floor", ratio(cpu("contended", "floor"), cpu("contended", "netsem"))),
        ("contended_vs_redis", ratio(ops("contended", "netsem"), ops("contended", "redis"))),
        ("spread_vs_redis", ratio(ops("spread", "netsem"), ops("spread", "redis"))),
        ("cpu_vs_redis", ratio(cpu("contended", "redis"), cpu("contended", "netsem"))),
    ]
    if (QUEUED_OFF, "netsem") in groups:
        figures += [
            ("contended_qoff_vs_floor", ratio(ops(QUEUED_OFF, "netsem"), ops("contended", "floor"))),
            ("cpu_qoff_vs_floor", ratio(cpu("contended", "floor"), cpu(QUEUED_OFF, "netsem"))),
        ]
    if ("cycle1", "netsemtls") in groups or ("contended", "netsemtls") in groups:
        figures += [
            ("cycle1_tls_vs_plain", ratio(ops("cycle1", "netsemtls"), ops("cycle1", "netsem"))),
            ("contended_tls_vs_plain", ratio(ops("contended", "netsemtls"), ops("contended", "netsem"))),
        ]
    if ("contended", "cluster") in groups:
        figures += [
            ("cluster_vs_single", ratio(ops("contended", "cluster"), ops("contended", "netsemsync"))),
            ("cluster_vs_etcd", ratio(ops("contended", "cluster"), ops("contended", "etcd"))),
        ]
    if ("durable", "cluster") in groups:
        figures += [("cluster_vs_single_durable", ratio(ops("durable", "cluster"), ops("durable", "netsemsync")))]
    if floors:
        ceiling = median_of([f["ceiling_cycles_per_s"] for f in floors.values()])
        figures += [("disk_ceiling_vs_single", ratio(ceiling, ops("contended", "netsemsync")))]
    print()
    print("ratios: " + " ".join(f"{name}={'n/a' if value is None else f'{value:.2f}'}" for name, value in figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
