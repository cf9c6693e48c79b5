"""LocalSemaphores (netsem._local) against the real kernel, in a private
registry (the ``local_dir`` fixture): the limit across processes and
threads, permits coming back from a SIGKILLed holder, timeouts and
cancellation, WAIT/POST, limits, the registry's rules (stale and torn
entries, hash collisions, refused directories), and the table of holders
between server permits and fallback. These mirror
tests/client/local_semaphores_test.cc; test_local_cross.py checks that the
C++ client shares all of it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_helpers import PythonHolder, python_env

import netsem
from netsem import _local_registry, _sysv
from netsem._local import LocalSemaphores

# How long a test waits for something that should happen at once.
PATIENCE = 10.0


@pytest.fixture
def sems(local_dir: Path) -> Iterator[LocalSemaphores]:
    """A LocalSemaphores on a fresh registry, emptied at the end."""
    semaphores = LocalSemaphores(local_dir / "registry")
    yield semaphores
    semaphores.remove_all()


def test_semid_ds_layout_reads_this_users_two_semaphore_set(sems: LocalSemaphores) -> None:
    # The ctypes struct must match glibc's: owner, size and ctime are what
    # every liveness check reads.
    semid = sems.system_v_id("$layout", 1)
    ds = _sysv.stat(semid)
    assert ds.sem_perm.uid == os.geteuid() and ds.sem_perm.cuid == os.geteuid()
    assert ds.sem_nsems == 2
    assert ds.sem_perm.mode & 0o777 == 0o600
    assert abs(ds.sem_ctime - time.time()) < 3600
    listed = subprocess.run(["ipcs", "-s", "-i", str(semid)], capture_output=True, text=True, check=True).stdout
    assert "nsems = 2" in listed


def test_limit_holds_across_processes(sems: LocalSemaphores, tmp_path: Path) -> None:
    # Four processes, each holding $pool (limit 2) a few times: a holder
    # marks itself in a directory while it holds, and records how many marks
    # it saw. The first holders wait (bounded) for a second one, which the
    # limit must let in, so the hold overlaps with the others' attempts.
    holding = tmp_path / "holding"
    holding.mkdir()
    code = r"""
import os, sys, time
from pathlib import Path
from netsem._local import LocalSemaphores
directory, holding = sys.argv[1], Path(sys.argv[2])
sems = LocalSemaphores(directory)
most = 0
for _ in range(5):
    grant = sems.acquire("$pool", 2, 1, 10)
    mine = holding / f"{os.getpid()}"
    mine.touch()
    give_up = time.monotonic() + 10
    while not (holding.parent / "reached").exists() and time.monotonic() < give_up:
        if len(list(holding.iterdir())) >= 2:
            (holding.parent / "reached").touch()
        time.sleep(0.001)
    most = max(most, len(list(holding.iterdir())))
    time.sleep(0.01)
    most = max(most, len(list(holding.iterdir())))
    mine.unlink()
    sems.release("$pool", 1, grant)
print(most)
"""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(sems.dir), str(holding)],
            stdout=subprocess.PIPE,
            text=True,
            env=python_env(),
        )
        for _ in range(4)
    ]
    seen = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        seen.append(int(out))
    assert max(seen) == 2
    assert sems.info("$pool", 2) == netsem._local.LocalInfo(value=2, held=0, waiting=0)


def test_limit_holds_across_threads(sems: LocalSemaphores) -> None:
    lock = threading.Lock()
    state = {"now": 0, "most": 0}
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                grant = sems.acquire("$threads", 3, 1, PATIENCE)
                with lock:
                    state["now"] += 1
                    state["most"] = max(state["most"], state["now"])
                time.sleep(0.002)
                with lock:
                    state["now"] -= 1
                sems.release("$threads", 1, grant)
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    assert 1 <= state["most"] <= 3
    assert sems.value("$threads", 3) == 3


def test_permits_of_a_sigkilled_holder_come_back(sems: LocalSemaphores) -> None:
    holder = PythonHolder(sems.dir, "$killed", limit=2, count=2)
    assert sems.info("$killed", 2) == netsem._local.LocalInfo(value=0, held=2, waiting=0)
    with pytest.raises(netsem.Timeout):
        sems.acquire("$killed", 2, 1, 0)
    holder.kill()
    # SEM_UNDO: the kernel gave both counts back when the process died.
    assert sems.info("$killed", 2) == netsem._local.LocalInfo(value=2, held=0, waiting=0)
    sems.release("$killed", 2, sems.acquire("$killed", 2, 2, 0))


def test_released_permits_go_back_once(sems: LocalSemaphores) -> None:
    holder = PythonHolder(sems.dir, "$orderly", limit=1)
    holder.release()  # released, then exited: the undo adjustment was zero
    assert sems.info("$orderly", 1) == netsem._local.LocalInfo(value=1, held=0, waiting=0)


def test_try_fails_at_once(sems: LocalSemaphores) -> None:
    grant = sems.acquire("$try", 1, 1, 0)
    started = time.monotonic()
    with pytest.raises(netsem.Timeout) as caught:
        sems.acquire("$try", 1, 1, 0)
    assert time.monotonic() - started < 1.0
    assert isinstance(caught.value, TimeoutError)
    assert str(caught.value) == "timed out waiting for 1 permits of `$try`"
    with pytest.raises(netsem.Timeout):
        sems.acquire("$try", 1, 1, -5)
    sems.release("$try", 1, grant)


def test_timed_acquire_waits_its_timeout(sems: LocalSemaphores) -> None:
    grant = sems.acquire("$timed", 1, 1, None)
    started = time.monotonic()
    with pytest.raises(netsem.Timeout):
        sems.acquire("$timed", 1, 1, 0.2)
    elapsed = time.monotonic() - started
    assert 0.19 <= elapsed < 5.0
    sems.release("$timed", 1, grant)


def test_timed_acquire_gets_a_permit_released_meanwhile(sems: LocalSemaphores) -> None:
    grant = sems.acquire("$meanwhile", 1, 1, 0)
    releaser = threading.Timer(0.1, lambda: sems.release("$meanwhile", 1, grant))
    releaser.start()
    second = sems.acquire("$meanwhile", 1, 1, PATIENCE)
    releaser.join()
    sems.release("$meanwhile", 1, second)


def test_cancel_from_another_thread_within_a_slice(sems: LocalSemaphores) -> None:
    grant = sems.acquire("$cancel", 1, 1, 0)
    token = netsem.CancelToken()
    outcome: list[BaseException] = []
    cancelled_at: list[float] = []

    def waiter() -> None:
        try:
            sems.acquire("$cancel", 1, 1, None, token)
        except BaseException as error:  # noqa: BLE001 - checked below
            outcome.append(error)
        cancelled_at.append(time.monotonic())

    thread = threading.Thread(target=waiter)
    thread.start()
    # Cancelled once it waits in the kernel (GETNCNT counts it).
    deadline = time.monotonic() + PATIENCE
    while sems.info("$cancel", 1).waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert sems.info("$cancel", 1).waiting == 1
    cancel_time = time.monotonic()
    token.cancel()
    thread.join(PATIENCE)
    assert len(outcome) == 1 and isinstance(outcome[0], netsem.Cancelled)
    assert str(outcome[0]) == "waiting for `$cancel` was cancelled"
    # Seen within one 50 ms slice (generous bound for a loaded machine).
    assert cancelled_at[0] - cancel_time < 1.0
    assert sems.info("$cancel", 1) == netsem._local.LocalInfo(value=0, held=1, waiting=0)
    sems.release("$cancel", 1, grant)


def test_an_already_cancelled_token_takes_nothing(sems: LocalSemaphores) -> None:
    token = netsem.CancelToken()
    token.cancel()
    with pytest.raises(netsem.Cancelled):
        sems.acquire("$precancelled", 2, 1, None, token)
    with pytest.raises(netsem.Cancelled):
        sems.wait("$precancelled", 2, 1, None, token)
    assert sems.value("$precancelled", 2) == 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.acquire("", 1, 1, 0), "a local semaphore needs a name"),
        (lambda s: s.acquire("$bad", 0, 1, 0), "limit 0 of `$bad` is below 1"),
        (lambda s: s.acquire("$bad", 1, 0, 0), "count 0 is below 1"),
        (lambda s: s.acquire("$bad", 1, -3, 0), "count -3 is below 1"),
        (lambda s: s.acquire("$bad", 1, 1.5, 0), "count 1.5 is not an integer"),
        (lambda s: s.acquire("$bad", 1, 1, float("nan")), "timeout nan is not a number of seconds"),
        (lambda s: s.post("$bad", 1, 0), "count 0 is below 1"),
        (lambda s: s.wait("$bad", "2", 1, 0), "limit '2' is not an integer"),
        (lambda s: s.value(None, 1), "a local semaphore needs a name"),
    ],
)
def test_bad_arguments(sems: LocalSemaphores, call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(netsem.InvalidArgument) as caught:
        call(sems)
    assert str(caught.value) == message


def test_more_than_the_limit_is_too_many(sems: LocalSemaphores) -> None:
    with pytest.raises(netsem.TooMany) as caught:
        sems.acquire("$few", 2, 3, None)  # at once, not a wait for ever
    assert str(caught.value) == "3 permits of `$few` asked, its limit is 2"
    with pytest.raises(netsem.TooMany):
        sems.acquire("$few", 2, 10**30, None)


def test_limits_above_semvmx_are_lowered(sems: LocalSemaphores) -> None:
    assert sems.value("$huge", 10**9) == LocalSemaphores.MAX_LIMIT == 32767
    grant = sems.acquire("$huge", 10**9, 32767, 0)
    sems.release("$huge", 32767, grant)


def test_release_only_what_this_process_holds(sems: LocalSemaphores) -> None:
    grant = sems.acquire("$mine", 3, 1, 0)
    with pytest.raises(netsem.NotHeld) as caught:
        sems.release("$mine", 2, grant)
    assert str(caught.value) == "releasing 2 permits of `$mine`, this process holds 1"
    assert sems.value("$mine", 3) == 2  # nothing changed
    sems.release("$mine", 1, grant)
    with pytest.raises(netsem.NotHeld):
        sems.release("$mine", 1, grant)
    with pytest.raises(netsem.NotHeld):
        sems.release("$unused", 1, sems.current("$unused"))
    assert sems.value("$mine", 3) == 3


def test_consumed_permits_stay_consumed_after_exit(sems: LocalSemaphores) -> None:
    holder = PythonHolder(sems.dir, "$consumed", limit=3, count=2, mode="wait")
    holder.kill()
    assert sems.info("$consumed", 3) == netsem._local.LocalInfo(value=1, held=0, waiting=0)
    sems.post("$consumed", 3, 2)
    assert sems.value("$consumed", 3) == 3


def test_post_counts_held_permits(sems: LocalSemaphores) -> None:
    grant = sems.acquire("$post", 2, 1, 0)
    with pytest.raises(netsem.Overflow) as caught:
        sems.post("$post", 2, 1)
    assert str(caught.value) == "posting 1 permits of `$post` would make 2 free and 1 held, above its limit 2"
    sems.release("$post", 1, grant)
    sems.wait("$post", 2, 2, 0)
    sems.post("$post", 2, 2)
    with pytest.raises(netsem.Overflow):
        sems.post("$post", 2, 10**30)
    assert sems.value("$post", 2) == 2


def test_concurrent_posts_never_overshoot(sems: LocalSemaphores) -> None:
    sems.wait("$posters", 4, 4, 0)
    outcomes: list[str] = []
    lock = threading.Lock()

    def poster() -> None:
        others = LocalSemaphores(sems.dir)  # as another process would: its own cache
        try:
            others.post("$posters", 4, 1)
            result = "ok"
        except netsem.Overflow:
            result = "overflow"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=poster) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE)
    assert sorted(outcomes) == ["ok"] * 4 + ["overflow"] * 6
    assert sems.value("$posters", 4) == 4


def test_info_counts_free_held_and_waiting(sems: LocalSemaphores) -> None:
    grant = sems.acquire("$info", 3, 2, 0)
    assert sems.info("$info", 3) == netsem._local.LocalInfo(value=1, held=2, waiting=0)
    token = netsem.CancelToken()
    thread = threading.Thread(target=lambda: pytest.raises(netsem.Cancelled, sems.acquire, "$info", 3, 3, None, token))
    thread.start()
    deadline = time.monotonic() + PATIENCE
    while sems.info("$info", 3).waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert sems.info("$info", 3) == netsem._local.LocalInfo(value=1, held=2, waiting=1)
    token.cancel()
    thread.join(PATIENCE)
    sems.release("$info", 2, grant)


def test_removed_semaphore_is_detected_and_recreated(sems: LocalSemaphores) -> None:
    grant = sems.acquire("$removed", 1, 1, 0)
    old = sems.system_v_id("$removed", 1)
    other = LocalSemaphores(sems.dir)
    other.remove("$removed")
    with pytest.raises(netsem.NotHeld) as caught:
        sems.release("$removed", 1, grant)
    assert "were lost" in str(caught.value)
    fresh = sems.acquire("$removed", 1, 1, 0)
    assert fresh.id != old
    sems.release("$removed", 1, fresh)


def test_waiter_moves_to_the_fresh_semaphore(sems: LocalSemaphores) -> None:
    sems.acquire("$moved", 1, 1, 0)
    got: list[netsem._local.LocalGrant] = []
    waiter = LocalSemaphores(sems.dir)
    thread = threading.Thread(target=lambda: got.append(waiter.acquire("$moved", 1, 1, PATIENCE)))
    thread.start()
    deadline = time.monotonic() + PATIENCE
    while sems.info("$moved", 1).waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    sems.remove("$moved")  # the waiter wakes with EIDRM and takes the fresh one
    thread.join(PATIENCE)
    assert len(got) == 1
    waiter.release("$moved", 1, got[0])


def test_stale_entry_with_a_reused_id_is_replaced(sems: LocalSemaphores) -> None:
    semid = sems.system_v_id("$stale", 1)
    entry = sems.dir / LocalSemaphores.entry_file_name("$stale")
    # An id that now names another set (one semaphore, not two): stale.
    decoy = _sysv.semget_private(1)
    try:
        text = entry.read_text().replace(f"id {semid}\n", f"id {decoy}\n")
        entry.write_text(text)
        fresh = LocalSemaphores(sems.dir)
        new_id = fresh.system_v_id("$stale", 1)
        assert new_id not in (semid, decoy)
        assert f"id {new_id}\n" in entry.read_text()
        assert _sysv.getval(decoy, 0) == 0  # the decoy was left alone
    finally:
        _sysv.rmid(decoy)
        _sysv.rmid(semid)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "netsem-local 2\nid 5\n",
        "netsem-local 1\nid 5\nctime 1\nlimit 1\nkey $torn\n",
        "netsem-local 2\nid +5\nctime 1\nlimit 1\nkey $torn\n",
        "netsem-local 2\nid 5\nctime 1\nlimit 40000\nkey $torn\n",
        "netsem-local 2\nid 5\nctime 1\nlimit 1\nkey $torn",
    ],
)
def test_torn_or_foreign_record_is_no_entry(sems: LocalSemaphores, text: str) -> None:
    sems.dir.mkdir(mode=0o700, exist_ok=True)
    entry = sems.dir / LocalSemaphores.entry_file_name("$torn")
    entry.write_text(text)
    semid = sems.system_v_id("$torn", 1)
    assert entry.read_text().startswith(f"netsem-local 2\nid {semid}\n")
    assert entry.read_text().endswith("limit 1\nkey $torn\n")


def test_a_key_sharing_the_hash_takes_the_next_file(sems: LocalSemaphores) -> None:
    # Another key's record in our hash's file (a collision, forged): ours
    # goes to "-1", and neither disturbs the other.
    sems.dir.mkdir(mode=0o700, exist_ok=True)
    base = LocalSemaphores.entry_file_name("$mine")
    (sems.dir / base).write_text("netsem-local 2\nid 0\nctime 0\nlimit 1\nkey $someone-else\n")
    semid = sems.system_v_id("$mine", 1)
    assert "key $mine\n" in (sems.dir / f"{base}-1").read_text()
    assert "key $someone-else\n" in (sems.dir / base).read_text()
    assert LocalSemaphores(sems.dir).system_v_id("$mine", 1) == semid
    (sems.dir / base).unlink()  # its id is no semaphore of ours: no clean-up may act on it


def test_entry_file_names_are_fnv1a_of_the_utf8_name() -> None:
    # FNV-1a 64 test vectors, and a name that is not ASCII.
    assert _local_registry.fnv1a64(b"") == 0xCBF29CE484222325
    assert _local_registry.fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert _local_registry.fnv1a64(b"foobar") == 0x85944171F73967E8
    assert LocalSemaphores.entry_file_name("foobar") == "85944171f73967e8"
    assert LocalSemaphores.entry_file_name("$é") == f"{_local_registry.fnv1a64('$é'.encode()):016x}"


def test_limit_changes_only_while_idle(sems: LocalSemaphores) -> None:
    grant = sems.acquire("$limit", 2, 1, 0)
    other = LocalSemaphores(sems.dir)
    # In use: keeps its limit of 2, whatever the other asks.
    assert other.info("$limit", 5) == netsem._local.LocalInfo(value=1, held=1, waiting=0)
    with pytest.raises(netsem.TooMany):
        other.acquire("$limit", 5, 3, 0)
    sems.release("$limit", 1, grant)
    # Idle: replaced by a fresh semaphore with the new limit.
    old = sems.system_v_id("$limit", 2)
    assert other.value("$limit", 5) == 5
    assert other.system_v_id("$limit", 5) != old


def test_registry_dir_is_made_private(local_dir: Path) -> None:
    directory = local_dir / "a" / "b"
    sems = LocalSemaphores(directory)
    try:
        assert sems.value("$private", 1) == 1
        assert directory.stat().st_mode & 0o777 == 0o700
    finally:
        sems.remove_all()


def test_registry_dir_others_may_write_is_refused(local_dir: Path) -> None:
    directory = local_dir / "open"
    directory.mkdir()
    directory.chmod(0o777)
    with pytest.raises(netsem.IoError) as caught:
        LocalSemaphores(directory).value("$x", 1)
    assert str(caught.value) == (
        f"{directory}: others may write it (mode 777); refusing it as the local semaphore registry (chmod 700 it)"
    )
    assert list(directory.iterdir()) == []


def test_registry_dir_symlink_and_file_are_refused(local_dir: Path) -> None:
    real = local_dir / "real"
    real.mkdir(mode=0o700)
    link = local_dir / "link"
    link.symlink_to(real)
    with pytest.raises(netsem.IoError, match="not a directory"):
        LocalSemaphores(link).acquire("$x", 1, 1, 0)
    plain = local_dir / "plain"
    plain.write_text("")
    with pytest.raises(netsem.IoError, match="not a directory"):
        LocalSemaphores(plain).acquire("$x", 1, 1, 0)
    assert list(real.iterdir()) == []


def test_default_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/4242")
    assert LocalSemaphores.default_dir() == Path("/run/user/4242/netsem")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "")
    assert LocalSemaphores.default_dir() == Path(f"/tmp/netsem-{os.geteuid()}")


def test_remove_all_leaves_no_semaphore(local_dir: Path) -> None:
    sems = LocalSemaphores(local_dir / "all")
    ids = [sems.system_v_id(f"$n{i}", 1) for i in range(3)]
    table = sems.mark_server_holder("server-name", 0)
    sems.unmark(table)
    sems.remove_all()
    assert list((local_dir / "all").iterdir()) == []
    for semid in ids + [table.table.id]:
        with pytest.raises(OSError):
            _sysv.stat(semid)


# -- the table of holders: server permits and fallback -------------------


def test_server_holder_blocks_fallback_until_unmarked(sems: LocalSemaphores) -> None:
    mark = sems.mark_server_holder("jobs", 0)
    started = time.monotonic()
    with pytest.raises(netsem.Timeout) as caught:
        sems.acquire("jobs", 2, 1, 0.1, fallback=True)
    assert time.monotonic() - started >= 0.09
    assert "still hold it from the server" in str(caught.value)
    assert sems.value("jobs", 2) == 2  # the permit taken was given back
    sems.unmark(mark)
    grant = sems.acquire("jobs", 2, 1, 0, fallback=True)
    assert grant.mark is not None and not grant.mark.lost
    sems.release("jobs", 1, grant)
    sems.unmark(grant.mark)


def test_fallback_waits_for_a_server_holder_to_go(sems: LocalSemaphores) -> None:
    mark = sems.mark_server_holder("handover", 0)
    threading.Timer(0.1, lambda: sems.unmark(mark)).start()
    grant = sems.acquire("handover", 1, 1, PATIENCE, fallback=True)
    sems.release("handover", 1, grant)
    sems.unmark(grant.mark)


def test_fallback_holder_blocks_server_mark(sems: LocalSemaphores) -> None:
    with PythonHolder(sems.dir, "jobs", mode="fallback") as holder:
        with pytest.raises(netsem.Timeout) as caught:
            sems.mark_server_holder("jobs", 0.05)
        assert "from a fallback" in str(caught.value)
        holder.release()
    sems.unmark(sems.mark_server_holder("jobs", 0))


def test_lost_server_permit_blocks_both(sems: LocalSemaphores) -> None:
    mark = sems.mark_server_holder("lost", 0)
    sems.mark_lost(mark)
    assert mark.lost
    with pytest.raises(netsem.Timeout):
        sems.mark_server_holder("lost", 0)
    with pytest.raises(netsem.Timeout):
        sems.acquire("lost", 1, 1, 0, fallback=True)
    sems.unmark(mark)
    sems.unmark(mark)  # spent: does not count twice
    sems.mark_lost(mark)
    sems.unmark(sems.mark_server_holder("lost", 0))


def test_server_holders_share_a_name(sems: LocalSemaphores) -> None:
    # Server marks never exclude each other: the server counts its permits.
    first = sems.mark_server_holder("shared", 0)
    second = sems.mark_server_holder("shared", 0)
    sems.unmark(first)
    with pytest.raises(netsem.Timeout):
        sems.acquire("shared", 1, 1, 0, fallback=True)
    sems.unmark(second)
    sems.release("shared", 1, sems.acquire("shared", 1, 1, 0, fallback=True))


def test_marks_of_a_sigkilled_process_are_dropped(sems: LocalSemaphores) -> None:
    for mode in ("server", "lost", "fallback"):
        holder = PythonHolder(sems.dir, f"killed-{mode}", mode=mode)
        with pytest.raises(netsem.Timeout):
            if mode == "fallback":
                sems.mark_server_holder(f"killed-{mode}", 0)
            else:
                sems.acquire(f"killed-{mode}", 1, 1, 0, fallback=True)
        holder.kill()
        grant = sems.acquire(f"killed-{mode}", 1, 1, 0, fallback=True)
        sems.release(f"killed-{mode}", 1, grant)
        sems.unmark(grant.mark)


def test_cancel_a_server_mark_wait(sems: LocalSemaphores) -> None:
    with PythonHolder(sems.dir, "cancelled", mode="fallback"):
        token = netsem.CancelToken()
        threading.Timer(0.1, token.cancel).start()
        with pytest.raises(netsem.Cancelled):
            sems.mark_server_holder("cancelled", PATIENCE, token)


def test_a_forked_child_does_not_release_its_parents_permits(sems: LocalSemaphores) -> None:
    grant = sems.acquire("$forked", 1, 1, 0)
    mark = sems.mark_server_holder("forked", 0)
    pid = os.fork()
    if pid == 0:  # the child: its own process, holding nothing
        code = 0
        try:
            sems.release("$forked", 1, grant)
            code = 1
        except netsem.NotHeld:
            pass
        except BaseException:
            code = 2
        sems.unmark(mark)  # not its mark: nothing happens
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sems.info("$forked", 1) == netsem._local.LocalInfo(value=0, held=1, waiting=0)
    with pytest.raises(netsem.Timeout):
        sems.acquire("forked", 1, 1, 0, fallback=True)  # the parent's server mark stands
    sems.release("$forked", 1, grant)
    sems.unmark(mark)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory to another user")
def test_registry_dir_of_another_user_is_refused(local_dir: Path) -> None:
    directory = local_dir / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    with pytest.raises(netsem.IoError) as caught:
        LocalSemaphores(directory).value("$x", 1)
    assert str(caught.value) == (
        f"{directory}: owned by uid 65534, not by this user (0); refusing it as the local semaphore registry"
    )


def test_an_entry_file_that_is_a_symlink_is_not_followed(sems: LocalSemaphores, tmp_path: Path) -> None:
    sems.dir.mkdir(mode=0o700, exist_ok=True)
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    link = sems.dir / LocalSemaphores.entry_file_name("$link")
    link.symlink_to(target)
    with pytest.raises(netsem.IoError, match="cannot open: Too many levels of symbolic links"):
        sems.acquire("$link", 1, 1, 0)
    with pytest.raises(netsem.IoError, match="cannot open"):
        sems.remove_all()  # goes on past it, then says so
    assert target.read_text() == "untouched"
    link.unlink()


def test_ctrl_c_interrupts_a_blocked_acquire(sems: LocalSemaphores) -> None:
    # A wait for ever is one plain semop; SIGINT makes it return EINTR, and
    # Python's handler then raises KeyboardInterrupt in the waiting thread.
    grant = sems.acquire("$interrupted", 1, 1, 0)
    code = r"""
import sys
from netsem._local import LocalSemaphores
sems = LocalSemaphores(sys.argv[1])
print("waiting", flush=True)
try:
    sems.acquire("$interrupted", 1, 1, None)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(sems.dir)], stdout=subprocess.PIPE, text=True, env=python_env()
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "waiting"
        deadline = time.monotonic() + PATIENCE
        while sems.info("$interrupted", 1).waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        child.send_signal(signal.SIGINT)
        assert child.stdout.readline().strip() == "interrupted"
        assert child.wait(PATIENCE) == 0
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    sems.release("$interrupted", 1, grant)


@pytest.mark.parametrize("how", ["remove", "ipcrm"])
def test_a_grant_lost_with_its_semaphore_never_frees_its_successor(sems: LocalSemaphores, how: str) -> None:
    first = sems.acquire("$j", 1, 1, 0)
    if how == "remove":
        sems.remove("$j")
    else:
        _sysv.rmid(first.id)
    second = sems.acquire("$j", 1, 1, 0)
    assert second.id != first.id
    with pytest.raises(netsem.NotHeld):
        sems.release("$j", 1, first)  # went with its semaphore: changes nothing
    assert sems.value("$j", 1) == 0
    with pytest.raises(netsem.Timeout):
        sems.acquire("$j", 1, 1, 0)  # still one holder under limit 1
    sems.release("$j", 1, second)
    assert sems.value("$j", 1) == 1


@pytest.mark.parametrize("timeout", [float("inf"), LocalSemaphores.FOREVER_AFTER + 1, 1e300])
def test_a_huge_timeout_waits_for_ever(sems: LocalSemaphores, timeout: float) -> None:
    grant = sems.acquire("$huge", 1, 1, 0)
    token = netsem.CancelToken()
    canceller = threading.Timer(0.1, token.cancel)
    canceller.start()
    started = time.monotonic()
    with pytest.raises(netsem.Cancelled):
        sems.acquire("$huge", 1, 1, timeout, token)
    assert time.monotonic() - started >= 0.09
    canceller.join()
    sems.release("$huge", 1, grant)


def test_a_reused_id_of_the_same_shape_is_not_taken_for_ours(sems: LocalSemaphores) -> None:
    # The record names a live two-semaphore set of ours, but with another
    # creation time: what an id reused after a reboot looks like.
    decoy = _sysv.semget_private(2)
    try:
        _sysv.setval(decoy, 0, 7)
        sems.value("$r", 2)  # creates the directory
        entry = sems.dir / LocalSemaphores.entry_file_name("$reused")
        entry.write_text(f"netsem-local 2\nid {decoy}\nctime 1\nlimit 2\nkey $reused\n")
        assert sems.system_v_id("$reused", 2) != decoy
        assert sems.value("$reused", 2) == 2
        assert _sysv.getval(decoy, 0) == 7  # untouched
    finally:
        _sysv.rmid(decoy)


def test_different_names_never_share(sems: LocalSemaphores) -> None:
    grants = {key: sems.acquire(key, 1, 1, 0) for key in ("$a", "$b", "a")}  # `a`'s fallback is not `$a`
    ids = {sems.system_v_id(f"$n{i}", 1) for i in range(50)}
    assert len(ids) == 50
    for key, grant in grants.items():
        sems.release(key, 1, grant)


def test_a_release_from_the_garbage_collector_inside_a_call_does_not_deadlock(
    sems: LocalSemaphores, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unreleased permit caught in a reference cycle is given back by its
    # finalizer (the Client's Permit.__del__) whenever the cyclic collector
    # runs: possibly in the middle of another call of the same thread,
    # inside this object's lock. That release must not wait for the lock
    # its own thread holds.
    import gc

    mine = LocalSemaphores(sems.dir)  # its own lock: a failure must not hang the fixture's clean-up
    grant = mine.acquire("$collected", 1, 1, 0)

    class Orphan:
        def __init__(self) -> None:
            self.cycle = self

        def __del__(self) -> None:
            mine.release("$collected", 1, grant)

    real_is_live = _local_registry.is_live
    collected = threading.Event()

    def is_live_then_collect(semid: int, ctime: int) -> bool:
        if not collected.is_set():
            collected.set()
            gc.collect()  # as if an allocation here triggered the collector
        return real_is_live(semid, ctime)

    def call() -> None:
        Orphan()  # unreachable at once, alive until the collector runs
        monkeypatch.setattr(_local_registry, "is_live", is_live_then_collect)
        mine.value("$collected", 1)  # cached: checks is_live under the lock

    thread = threading.Thread(target=call, daemon=True)
    gc.disable()
    try:
        thread.start()
        thread.join(PATIENCE)
    finally:
        gc.enable()
    assert not thread.is_alive(), "deadlocked: the finalizer's release waited for its own thread's lock"
    assert collected.is_set()
    assert sems.value("$collected", 1) == 1  # given back
