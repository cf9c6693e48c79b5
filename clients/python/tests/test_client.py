"""Tests of the blocking Client against the real netsemd: every call, the
errors each gives, FIFO and limits under threads, cancellation from another
thread, flags, the 1.1 listings and KICK.

Losses (kill -9, a frozen server, shutdown, restart) are in
test_client_loss.py. Every wait is bounded; the file takes a few seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import client_factory, wait_until

import netsem
from netsem import Client, ClientOptions
from netsem.errors import (
    AlreadyExists,
    Busy,
    Cancelled,
    Denied,
    InvalidArgument,
    NotFound,
    NotHeld,
    Overflow,
    Timeout,
    TooMany,
    Unavailable,
)


@pytest.fixture
def clients(local_dir) -> Iterator[Callable[..., Client]]:
    """``clients(server_address, **kwargs)`` makes Clients closed at the test's
    end, with the test's own registry of local semaphores (so that no test
    sees another's host-wide marks)."""
    yield from client_factory(local_dir)


def test_acquire_release_and_fences(netsemd, clients) -> None:
    client = clients(netsemd.address, label="tester")
    assert client.connected and client.stats().protocol == "1.1"
    with client.acquire("pool", count=2, timeout=5) as permit:
        assert (permit.name, permit.count, permit.is_local, permit.lost) == ("pool", 2, False, False)
        assert permit.loss_reason is None and permit.stop_by is None
        assert client.get("pool") == netsem.SemaphoreInfo("pool", 1, 3, 1, 0, "defined")
        assert client.try_acquire("pool", 2) is None  # only one free
        with client.acquire("pool") as other:
            assert other.fence is not None and permit.fence is not None and other.fence > permit.fence
        assert client.value("pool") == 1
    assert permit.released and client.value("pool") == 3
    permit.release()  # a second release does nothing
    assert client.stats().remote_grants == 2


def test_timeouts_try_and_too_many(netsemd, clients) -> None:
    holder = clients(netsemd.address)
    other = clients(netsemd.address)
    held = holder.acquire("one")
    start = time.monotonic()
    with pytest.raises(Timeout, match='ACQUIRE "one": timed out') as raised:
        other.acquire("one", timeout=0.2)
    assert isinstance(raised.value, TimeoutError)
    assert 0.18 <= time.monotonic() - start < 3
    assert other.try_acquire("one") is None
    with pytest.raises(Timeout):
        other.acquire("one", timeout=-1)  # negative only tries
    with pytest.raises(TooMany):
        other.acquire("pool", count=4)
    with pytest.raises(TooMany):
        other.acquire("unknown-name", count=2)  # an undefined semaphore has max 1
    held.release()
    assert other.try_acquire("one") is not None


def test_bad_arguments_are_invalid_argument_before_any_request(netsemd, clients) -> None:
    client = clients(netsemd.address)
    for name in ["", "x" * 256, "a\nb", "\x7f", "a\x85"]:
        with pytest.raises(InvalidArgument, match="bad semaphore name"):
            client.acquire(name)
    for count in (0, -1, 2**31, 1.5):
        with pytest.raises(InvalidArgument, match="count"):
            client.acquire("pool", count=count)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        client.acquire("pool", timeout=float("nan"))
    with pytest.raises(InvalidArgument):
        client.create("c", 3, 2)
    with pytest.raises(InvalidArgument):
        client.ping("two words")
    with pytest.raises(InvalidArgument, match="host-local"):
        client.create("$local", 1)
    with pytest.raises(InvalidArgument, match="host-local"):
        client.holders("$local")
    with pytest.raises(InvalidArgument):
        client.kick(0)
    with pytest.raises(InvalidArgument):
        Client("a:0")
    assert client.stats().connects == 1 and client.ping() == ""


def test_names_travel_intact(netsemd, clients) -> None:
    client = clients(netsemd.address)
    names = ["host:10.0.0.1 web", "100% sure", "été", "名前", "a%41", "." , ".."]
    for name in names:
        with client.acquire(name) as permit:
            assert client.get(name).holders == 1
            assert permit.name == name
        client.create(name, 1, 2)
    assert {info.name for info in client.list()} >= set(names)
    assert [info.name for info in client.list("host:")] == ["host:10.0.0.1 web"]


def test_counting_with_wait_and_post(netsemd, clients) -> None:
    client = clients(netsemd.address)
    client.create("jobs", 0, 5)
    client.create("jobs", 3, 5)  # exists: changes nothing (O_CREAT)
    with pytest.raises(AlreadyExists):
        client.create("jobs", 0, 5, exclusive=True)
    assert client.get("jobs").kind == "created" and client.value("jobs") == 0
    assert not client.try_wait("jobs")
    assert not client.timed_wait("jobs", 0.05)
    client.post("jobs", 2)
    assert client.value("jobs") == 2
    client.wait("jobs", timeout=1)
    assert client.try_wait("jobs")
    client.post("jobs", 5)
    with pytest.raises(Overflow):
        client.post("jobs")
    with pytest.raises(NotFound):
        client.post("never-made")
    with pytest.raises(NotFound):
        client.wait("never-made", timeout=0)
    # A waiter blocked in another thread is woken by a post.
    done = threading.Event()
    client.wait("jobs", count=5)

    def consume() -> None:
        client.wait("jobs", count=2, timeout=10)
        done.set()

    thread = threading.Thread(target=consume)
    thread.start()
    assert wait_until(lambda: client.get("jobs").waiters == 1)
    client.post("jobs")
    assert not done.wait(0.1)
    client.post("jobs")
    assert done.wait(10)
    thread.join()
    client.post("jobs")
    with client.acquire("jobs"):
        with pytest.raises(Busy):
            client.delete("jobs")
    client.delete("jobs")
    assert client.get("jobs").kind == "absent"
    with pytest.raises(NotFound):
        client.delete("jobs")


def test_ping_stats_and_the_11_listings(netsemd, clients) -> None:
    client = clients(netsemd.address, label="lister/1")
    other = clients(netsemd.address, label="waiter x")
    assert client.ping("hello%20") == "hello%20"
    stats = client.server_stats()
    assert stats["sessions"] == 2 and "session_timeout_ms" in stats
    permit = client.acquire("one")
    waiting = threading.Thread(target=lambda: other.acquire("one", timeout=5).release())
    waiting.start()
    assert wait_until(lambda: len(client.waiters("one")) == 1)
    (holder,) = client.holders("one")
    assert (holder.session_id, holder.count, holder.fence, holder.label) == (
        client.stats().session_id, 1, permit.fence, "lister/1")
    (waiter,) = client.waiters("one")
    assert (waiter.session_id, waiter.count, waiter.label) == (other.stats().session_id, 1, "waiter_x")
    assert waiter.timeout_left is not None and 0 < waiter.timeout_left <= 5
    sessions = {s.session_id: s for s in client.sessions()}
    mine = sessions[client.stats().session_id]
    assert (mine.dialect, mine.permits_held, mine.label) == ("v1", 1, "lister/1")
    assert sessions[other.stats().session_id].pending == 1
    permit.release()
    waiting.join(10)
    with pytest.raises(NotFound):
        client.holders("no-such-semaphore")


def test_kick_loses_the_permits_and_the_client_reconnects(netsemd, clients) -> None:
    admin = clients(netsemd.address)
    victim = clients(netsemd.address)
    permit = victim.acquire("one")
    reasons: list[netsem.NetsemError] = []
    lost = threading.Event()
    permit.on_lost(lambda reason: (reasons.append(reason), lost.set()))
    first_session = victim.stats().session_id
    admin.kick(first_session)
    assert lost.wait(10)
    assert isinstance(reasons[0], Unavailable) and "KICK" in str(reasons[0])
    assert permit.lost and permit.stop_by is None
    with pytest.raises(Unavailable, match="lost"):
        permit.release()
    assert admin.try_acquire("one") is not None  # the server let go at once
    assert wait_until(lambda: victim.connected and victim.stats().session_id not in (0, first_session))
    assert victim.stats().connects == 2
    # Its next round connected: no fallback was entered (only a round that
    # reaches no server enters it), so none was left either.
    assert (victim.stats().fallback_entries, victim.stats().fallback_exits) == (0, 0)
    with pytest.raises(NotFound):
        admin.kick(first_session)


def test_kick_needs_the_admin_right(start_netsemd, clients) -> None:
    server = start_netsemd(semaphores="one = 1", server_options="admin_networks = 10.9.9.9/32")
    client = clients(server.address)
    with pytest.raises(Denied):
        client.kick(client.stats().session_id)


def test_flags(netsemd, clients) -> None:
    first = clients(netsemd.address)
    second = clients(netsemd.address)
    assert not first.test_flag("flag")
    first.set_flag("flag")
    first.set_flag("flag")  # already set by this process: at once
    assert first.test_flag("flag") and second.test_flag("flag")
    start = time.monotonic()
    with pytest.raises(Timeout):
        second.set_flag("flag", wait=0.1)
    assert time.monotonic() - start >= 0.09
    with pytest.raises(NotHeld):
        second.clear_flag("flag")
    first.clear_flag("flag")
    with pytest.raises(NotHeld):
        first.clear_flag("flag")
    second.set_flag("flag", wait=1)
    assert first.test_flag("flag")
    second.close()  # closing gives the flags back (once the server has read the end)
    assert wait_until(lambda: not first.test_flag("flag"))


def test_cancel_from_another_thread_sends_cancel(netsemd, clients) -> None:
    holder = clients(netsemd.address)
    waiter = clients(netsemd.address)
    held = holder.acquire("one")
    token = netsem.CancelToken()
    outcome: list[BaseException] = []

    def blocked() -> None:
        try:
            waiter.acquire("one", cancel=token)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=blocked)
    thread.start()
    assert wait_until(lambda: holder.get("one").waiters == 1)
    token.cancel()
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled)
    assert holder.get("one").waiters == 0  # the server dropped the request
    with pytest.raises(Cancelled):
        waiter.acquire("one", cancel=token)  # a fired token cancels at once
    with pytest.raises(Cancelled):
        waiter.wait("one", cancel=token)
    held.release()
    assert holder.get("one").holders == 0  # nothing was granted to the cancelled request


def test_limit_and_fifo_under_threads(start_netsemd, clients) -> None:
    """8 threads (on 2 clients: one connection each, multiplexed) take a
    limit-3 name 25 times each: never more than 3 at once, and everyone gets
    through."""
    server = start_netsemd(semaphores="three = 3")
    shared = [clients(server.address), clients(server.address)]
    lock = threading.Lock()
    inside = 0
    most = 0
    grants = 0
    errors: list[BaseException] = []

    def worker(client: Client) -> None:
        nonlocal inside, most, grants
        try:
            for _ in range(25):
                with client.acquire("three", timeout=30):
                    with lock:
                        inside += 1
                        most = max(most, inside)
                        grants += 1
                    time.sleep(0.0005)
                    with lock:
                        inside -= 1
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(shared[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and grants == 200
    assert most <= 3
    assert shared[0].get("three").value == 3


def test_waiters_are_granted_in_fifo_order(netsemd, clients) -> None:
    holder = clients(netsemd.address)
    waiters = [clients(netsemd.address) for _ in range(5)]
    held = holder.acquire("one")
    order: list[int] = []
    lock = threading.Lock()

    def take(i: int) -> None:
        with waiters[i].acquire("one", timeout=20):
            with lock:
                order.append(i)

    threads = []
    for i in range(5):
        threads.append(threading.Thread(target=take, args=(i,)))
        threads[-1].start()
        assert wait_until(lambda: holder.get("one").waiters == i + 1)  # queued in this order
    # A try never overtakes a queued waiter.
    assert holder.try_acquire("one") is None
    held.release()
    for thread in threads:
        thread.join(30)
    assert order == [0, 1, 2, 3, 4]


def test_garbage_collected_permit_goes_back_with_a_warning(netsemd, clients) -> None:
    client = clients(netsemd.address)
    with pytest.warns(ResourceWarning, match="unreleased netsem permit"):
        client.acquire("one")  # dropped at once
        import gc

        gc.collect()
    assert wait_until(lambda: client.get("one").holders == 0)
    assert client.try_acquire("one") is not None


def test_a_permit_collected_while_its_loss_is_marked_does_not_deadlock_the_io_thread() -> None:
    """A Permit caught in a reference cycle is given back by its finalizer
    whenever the collector runs: on the I/O thread too, in the middle of
    marking that very permit lost (its session ended), inside the permit's
    own lock. Its release waited for that lock, held by its own thread: the
    I/O thread hung for good, and so did close() (found by
    test_cluster_fences at a cluster's teardown). Now the finalizer leaves
    the release to a thread of its own when the lock is taken, which gives
    the permit back (drops its host-wide mark) once the loss is marked."""
    from netsem.client import Permit, _PermitState

    class Connection:  # what a remote permit's release uses
        def unregister_permit(self, state: object) -> None:
            pass

        def send(self, build: Callable[[str], bytes], session: int = 0) -> object:
            return object()

        def on_io_thread(self) -> bool:
            return True

    unmarked: list[object] = []
    holder: list[Permit] = []

    class Marks:  # the host-wide table of holders
        def mark_lost(self, mark: object) -> None:
            holder.clear()  # the last reference goes: the finalizer runs here, inside the permit's lock

        def unmark(self, mark: object) -> None:
            unmarked.append(mark)

    state = _PermitState("db", 1)
    state.connection, state.session, state.fence = Connection(), 1, 5  # type: ignore[assignment]
    state.marks, state.mark = Marks(), object()
    mark = state.mark
    holder.append(Permit(state))
    marking = threading.Thread(target=state.mark_lost, args=(Unavailable("the session ended"), None), daemon=True)
    with pytest.warns(ResourceWarning, match="unreleased netsem permit"):
        marking.start()
        marking.join(5)
    assert not marking.is_alive(), "deadlocked: the finalizer's release waited for its own thread's lock"
    assert wait_until(lambda: unmarked == [mark], 5), unmarked
    assert state.released and state.loss is not None


def test_calls_after_close_raise_unavailable(netsemd, local_dir) -> None:
    client = Client(options=ClientOptions(servers=[netsemd.address], local_dir=local_dir))
    permit = client.acquire("one")
    client.close()
    client.close()
    assert permit.lost and isinstance(permit.loss_reason, Unavailable)
    with pytest.raises(Unavailable, match="closed"):
        client.acquire("one")
    # A lost permit counts on this host until it is given up (its work may
    # still run): give it up.
    with pytest.raises(Unavailable, match="was lost"):
        permit.release()
    other = Client(options=ClientOptions(servers=[netsemd.address], local_dir=local_dir))
    try:
        assert other.try_acquire("one") is not None  # the server let go when the client closed
    finally:
        other.close()


def test_a_forked_child_cannot_use_the_parents_client(netsemd, clients) -> None:
    import os

    client = clients(netsemd.address)
    permit = client.acquire("one")
    pid = os.fork()
    if pid == 0:  # the child: must raise at once, never hang or touch the parent's session
        code = 3
        try:
            client.ping()
        except RuntimeError as error:
            code = 0 if "fork" in str(error) else 4
        except BaseException:
            code = 5
        client.close()  # the parent's connection: left alone
        os._exit(code)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the child hung")
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.ping("still") == "still" and not permit.lost
    permit.release()


def test_options_is_a_copy_the_running_client_does_not_share(netsemd, local_dir) -> None:
    given = ClientOptions(servers=[netsemd.address], local_dir=local_dir, limits={"x": 2})
    with Client(options=given) as client:
        given.limits["x"] = 9  # the caller's options are copied at the start
        seen = client.options
        seen.limits["x"] = 5
        seen.servers.append("127.0.0.1:1")
        assert client.options.limits == {"x": 2} and client.options.servers == [netsemd.address]


def test_a_call_answers_the_refusal_of_the_round_that_decided(start_netsemd, clients, monkeypatch) -> None:
    """The refusal a call raises instead of falling back is read once, with
    the decision of the round that made it (issue 16, as libnetsem's
    4368136): a session that begins right after that decision does not turn
    it into a local grant. The window is held open deterministically: a
    wrapper of Connection.between() (the decision) waits, on the caller's
    thread, until the next round has a session. Without the change the
    refusal was read again by _fallback_limit, found cleared, and "one" was
    granted locally (fallback `local`) while the server held it for nobody."""
    import socket

    server = start_netsemd(semaphores="one = 1", server_options="max_connections = 1")
    blocker = socket.create_connection(("127.0.0.1", server.port))  # the one slot: others get * ERR LIMIT
    try:
        assert server.wait_for_log("session began session=1", 5)
        client = clients(server.address, fallback=netsem.FallbackPolicy("local"), reconnect_min=0.05,
                         reconnect_max=0.2)
        assert not client.connected
        connection = client._connection
        decide = connection.between

        def decide_then_connect() -> object:
            unsent = decide()
            blocker.close()  # the next round gets a session
            assert wait_until(connection.connected, 10)
            return unsent

        monkeypatch.setattr(connection, "between", decide_then_connect)
        with pytest.raises(netsem.LimitReached):
            client.acquire("one", timeout=5)
        assert client.stats().local_grants == 0
    finally:
        blocker.close()
