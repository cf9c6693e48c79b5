"""LocalSemaphores: host-wide counting semaphores shared by every process of
one user on this host, C++ and Python alike, for ``$`` names and for fallback
while no server can be reached. It mirrors libnetsem's
src/client/local_semaphores.{h,cc} call for call.

Each name is one System V semaphore set: its semaphore 0 counts the free
permits, its semaphore 1 the permits held host-wide. Permits held through
``acquire`` move from the first to the second in one semop with SEM_UNDO, so
the kernel gives them back when the process dies, SIGKILL included. Names map
to semaphore ids through the registry directory (``_local_registry``); the
kernel does the counting and blocking. ``wait``/``post`` consume and give back
on the same semaphore without SEM_UNDO: a consumed permit does not come back
when the process exits.

Limits: a semaphore is made with the limit of the first call that needs it on
this host, lowered to MAX_LIMIT (SEMVMX). A later call with another limit
changes it only while the semaphore is idle; otherwise it keeps the limit it
has ("the semaphore's limit" below).

Server permits and fallback: both kinds of permit of a server name are marked
in the host-wide table of holders, so that fallback never grants a name while
a process of this host holds it from the server (lost or not), and a server
grant never starts while fallback holders of the name still run.
``mark_server_holder`` waits until the name has no fallback holder and no lost
server permit and counts the server permit, atomically; ``mark_lost`` moves
the mark of a lost server permit to the lost ones; ``acquire(fallback=True)``
takes its permits, then counts itself as a fallback holder only if the name
has no server holder, lost or not, or gives them back and waits.

The format and the semop sequences both clients follow are stated in
docs/local-semaphores.md, "The format both clients follow".

Unlike the server, waiters are not served in FIFO order (the kernel wakes
whoever fits), and a try may take permits while others wait for more.

Thread safety: every method from any thread. After ``os.fork()`` the child
must make its own LocalSemaphores: permits held through SEM_UNDO are not
inherited (an object used in a child refuses to release or unmark what its
parent holds).
"""

from __future__ import annotations

import errno
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from netsem import _local_registry as registry
from netsem import _sysv
from netsem._cancel import CancelToken
from netsem.errors import Cancelled, InvalidArgument, IoError, NotHeld, Overflow, Timeout, TooMany

# The two semaphores of a name's set.
_FREE = 0  # free permits
_HELD = 1  # permits held (acquired, not consumed) host-wide

# How often a cancellable wait looks at its CancelToken: the kernel cannot
# wake a semop for us, so a cancel is seen within this long.
_CANCEL_SLICE = 0.05

_DONE, _TIMED_OUT, _CANCELLED, _REMOVED = range(4)


@dataclass(frozen=True)
class LocalInfo:
    """What a name's semaphore holds now. The kernel counts permits and
    blocked processes, not holders."""

    value: int  # free permits
    held: int  # permits acquired, not released, on this host (all processes)
    waiting: int  # processes blocked waiting for permits


@dataclass(eq=False)
class Mark:
    """A permit counted in the table of holders, for ``unmark``. Each permit
    counts once, whatever its count. ``mark_lost`` turns a server mark into a
    lost one in place; once unmarked, a mark is spent (unmark and mark_lost
    do nothing more), so calling them from two threads never counts twice."""

    table: registry.Table
    index: int  # the semaphore of the table this mark added to
    _pid: int = field(default_factory=os.getpid, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)  # reentrant: see LocalSemaphores
    _spent: bool = field(default=False, repr=False)

    @property
    def lost(self) -> bool:
        """True for the mark of a server permit that was lost."""
        return self.index % registry.PER_SLOT == 2


@dataclass(frozen=True)
class LocalGrant:
    """The semaphore an ``acquire`` took its permits on: ``release`` gives
    them back only there, so a grant lost with a removed semaphore can never
    free a permit of the fresh one that replaced it. ``mark`` is the fallback
    mark (``acquire(fallback=True)``), which the caller gives back with
    ``unmark`` after ``release``; None otherwise."""

    id: int
    ctime: int  # sem_ctime: tells a reused id apart
    mark: Mark | None = None


@dataclass
class _Cached:
    entry: registry.Entry
    held: int = 0  # permits this process took with SEM_UNDO


def _deadline_of(timeout: float | None) -> float | None:
    """A monotonic deadline; None (for ever) for None, or a timeout over
    FOREVER_AFTER (infinity included)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout):
        raise InvalidArgument(f"timeout {timeout!r} is not a number of seconds")
    if timeout > LocalSemaphores.FOREVER_AFTER:
        return None
    return time.monotonic() + max(0.0, float(timeout))


def _check_int(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} {value!r} is not an integer")
    return value


def _permit_ops(sign: int, count: int, undo: bool) -> list[tuple[int, int, int]]:
    """Takes (``sign`` -1) or gives back (+1) ``count`` permits: the free
    count, and for held permits (``undo``) the held count the other way, in
    one semop so that a crash (SEM_UNDO) or a racing post never sees them
    apart."""
    delta = sign * count
    if not undo:
        return [(_FREE, delta, 0)]
    return [(_FREE, delta, _sysv.SEM_UNDO), (_HELD, -delta, _sysv.SEM_UNDO)]


def _semop_now(semid: int, ops: list[tuple[int, int, int]]) -> int:
    """Applies ``ops`` at once (they cannot block): 0, or the errno."""
    ops = [(num, op, flags | _sysv.IPC_NOWAIT) for num, op, flags in ops]
    while True:
        try:
            _sysv.semop(semid, ops)
            return 0
        except OSError as e:
            if e.errno != errno.EINTR:
                return e.errno or errno.EIO


def _semop_until(
    semid: int, ops: list[tuple[int, int, int]], deadline: float | None, cancel: CancelToken | None
) -> int:
    """One semop of ``ops``, waiting until ``deadline`` (None: for ever) and
    looking at ``cancel`` every _CANCEL_SLICE. Returns _DONE, _TIMED_OUT,
    _CANCELLED or _REMOVED; raises OSError for any other failure."""
    while True:
        if cancel is not None and cancel.cancelled:
            return _CANCELLED
        nowait = False
        try:
            if deadline is None and cancel is None:
                _sysv.semop(semid, ops)
            else:
                wait = math.inf if deadline is None else deadline - time.monotonic()
                if wait <= 0:
                    nowait = True
                    _sysv.semop(semid, [(num, op, flags | _sysv.IPC_NOWAIT) for num, op, flags in ops])
                else:
                    if cancel is not None:
                        wait = min(wait, _CANCEL_SLICE)
                    _sysv.semop(semid, ops, wait)
            return _DONE
        except OSError as e:
            if e.errno == errno.EINTR:
                continue  # a signal: its Python handler runs here, and may raise
            if e.errno == errno.EAGAIN:
                if nowait:
                    return _TIMED_OUT
                continue  # a slice ended: look at the token and the deadline again
            if e.errno in (errno.EIDRM, errno.EINVAL):
                return _REMOVED
            raise


def _server(slot: int) -> int:
    return registry.PER_SLOT * slot


def _fallback(slot: int) -> int:
    return registry.PER_SLOT * slot + 1


def _lost(slot: int) -> int:
    return registry.PER_SLOT * slot + 2


class LocalSemaphores:
    """The host-wide local semaphores of one registry directory."""

    #: The largest value a System V semaphore holds (SEMVMX); larger limits are lowered to it.
    MAX_LIMIT = registry.MAX_LIMIT
    #: Slots of the table of holders: names share a slot by hash, so a server
    #: holder of one name delays the fallback of another one time in this many.
    HOLDER_SLOTS = 4096
    #: A timeout longer than this (about 100 years, in seconds) waits for ever.
    FOREVER_AFTER = 100 * 365 * 24 * 3600.0

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        """``directory`` holds the registry; created (mode 0700) on first use
        when missing; None or "" means ``default_dir()``. A directory that is
        not owned by this user, or that others may write, is refused: every
        call then raises IoError."""
        path = Path(directory) if directory not in (None, "") else self.default_dir()
        # Reentrant: a permit in a reference cycle is released by its
        # finalizer whenever the cyclic collector runs, which may be inside a
        # call of this same thread that holds the lock. (Only release and
        # unmark run from finalizers, and they take no file lock.)
        self._lock = threading.RLock()
        self._registry = registry.LocalRegistry(path)  # guarded by _lock
        self._entries: dict[str, _Cached] = {}  # guarded by _lock: cache of registry lookups
        self._table: registry.Table | None = None  # guarded by _lock
        self._pid = os.getpid()  # guarded by _lock: the process the cache belongs to

    @staticmethod
    def default_dir() -> Path:
        """``$XDG_RUNTIME_DIR/netsem`` when XDG_RUNTIME_DIR is set, else ``/tmp/netsem-<uid>``."""
        runtime = os.environ.get("XDG_RUNTIME_DIR", "")
        if runtime:
            return Path(runtime) / "netsem"
        return Path(f"/tmp/netsem-{os.geteuid()}")

    @staticmethod
    def entry_file_name(key: str) -> str:
        """The registry file of ``key``: 16 hex digits of its FNV-1a hash."""
        return registry.entry_file_name(key)

    @property
    def dir(self) -> Path:
        """The registry directory."""
        return self._registry.dir

    # -- lookups ----------------------------------------------------------

    def _check_fork(self) -> None:
        # REQUIRES: _lock held. A child process holds nothing of its parent's.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._entries.clear()
            self._table = None

    def _semaphore(self, key: str, limit: int) -> registry.Entry:
        """The semaphore for ``key``, made with ``limit`` free permits if this
        host has none yet. A cached entry is used after one IPC_STAT proves it
        is still the live semaphore."""
        if not isinstance(key, str) or key == "":
            raise InvalidArgument("a local semaphore needs a name")
        limit = _check_int("limit", limit)
        if limit < 1:
            raise InvalidArgument(f"limit {limit} of `{key}` is below 1")
        limit = min(limit, self.MAX_LIMIT)
        with self._lock:
            self._check_fork()
            cached = self._entries.get(key)
            if (
                cached is not None
                and cached.entry.limit == limit
                and registry.is_live(cached.entry.id, cached.entry.ctime)
            ):
                return cached.entry
            found = self._registry.find_or_make(key, limit)
            if cached is None:
                self._entries[key] = _Cached(found)
            else:
                # Permits held on a semaphore that is gone went with it.
                same = cached.entry.id == found.id and cached.entry.ctime == found.ctime
                self._entries[key] = _Cached(found, cached.held if same else 0)
            return found

    def _table_now(self) -> registry.Table:
        """The table of holders, made on first use; checked live like _semaphore."""
        with self._lock:
            self._check_fork()
            if self._table is not None and registry.is_live_table(self._table):
                return self._table
            self._table = self._registry.find_or_make_table(self.HOLDER_SLOTS)
            return self._table

    def _forget(self, key: str, semid: int) -> None:
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None and cached.entry.id == semid:
                del self._entries[key]

    # -- permits ----------------------------------------------------------

    def acquire(
        self,
        key: str,
        limit: int,
        count: int,
        timeout: float | None,
        cancel: CancelToken | None = None,
        *,
        fallback: bool = False,
    ) -> LocalGrant:
        """Takes ``count`` permits of ``key``, whose limit is ``limit`` (the
        semaphore is made with that many free permits on first use on this
        host). Waits up to ``timeout`` seconds (None, or more than
        FOREVER_AFTER: for ever; zero or negative: only tries), raising
        Cancelled when ``cancel`` is cancelled (seen within 50 ms; a grant that
        raced the cancel is given back). Raises Timeout, Cancelled, TooMany
        (count above the semaphore's limit), InvalidArgument (empty key, count
        or limit below 1), IoError (registry or kernel).

        With ``fallback`` (fallback for a server name): the permits are
        granted only while no process of the host holds ``key`` from the
        server (``mark_server_holder``); until then the call waits, within
        ``timeout``, and the grant's ``mark`` counts this permit as a fallback
        holder of ``key`` (give it back with ``unmark`` after ``release``)."""
        return self._take(key, limit, count, timeout, cancel, undo=True, fallback=fallback)

    def wait(
        self, key: str, limit: int, count: int, timeout: float | None, cancel: CancelToken | None = None
    ) -> None:
        """Like ``acquire``, but the permits are consumed (no SEM_UNDO): they
        stay taken after this process exits, until a ``post``. A grant that
        raced a cancel is posted back."""
        self._take(key, limit, count, timeout, cancel, undo=False, fallback=False)

    def _take(
        self,
        key: str,
        limit: int,
        count: int,
        timeout: float | None,
        cancel: CancelToken | None,
        undo: bool,
        fallback: bool,
    ) -> LocalGrant:
        count = _check_int("count", count)
        if count < 1:
            raise InvalidArgument(f"count {count} is below 1")
        deadline = _deadline_of(timeout)
        while True:
            entry = self._semaphore(key, limit)
            if count > entry.limit:
                raise TooMany(f"{count} permits of `{key}` asked, its limit is {entry.limit}")
            try:
                outcome = _semop_until(entry.id, _permit_ops(-1, count, undo), deadline, cancel)
            except OSError as e:
                raise registry.io_error(f"semop on local semaphore `{key}` (id {entry.id})", e.errno or 0) from None
            if outcome == _TIMED_OUT:
                raise Timeout(f"timed out waiting for {count} permits of `{key}`")
            if outcome == _CANCELLED:
                raise Cancelled(f"waiting for `{key}` was cancelled")
            if outcome == _REMOVED:
                self._forget(key, entry.id)  # removed under us: wait on the fresh one
                continue
            if cancel is not None and cancel.cancelled:
                # The grant raced the cancel: give it back (SEM_UNDO again
                # cancels the adjustment the take made). Removed meanwhile:
                # nothing to give.
                _semop_now(entry.id, _permit_ops(+1, count, undo))
                raise Cancelled(f"waiting for `{key}` was cancelled")
            mark: Mark | None = None
            if fallback:
                mark = self._mark_fallback(key, count, entry, undo, deadline, cancel)
                if mark is None:
                    continue  # given back: no server holder any more, or a fresh table
            if undo:
                with self._lock:
                    cached = self._entries.get(key)
                    if cached is not None and cached.entry.id == entry.id and cached.entry.ctime == entry.ctime:
                        cached.held += count
            return LocalGrant(entry.id, entry.ctime, mark)

    def _mark_fallback(
        self,
        key: str,
        count: int,
        entry: registry.Entry,
        undo: bool,
        deadline: float | None,
        cancel: CancelToken | None,
    ) -> Mark | None:
        """With ``count`` permits of ``entry`` taken, counts a fallback holder
        of ``key`` only while the name has no server holder, lost or not: the
        Mark. Otherwise gives the permits back, waits (within the deadline)
        until no server holder is left, and answers None for the caller to
        start again. mark_server_holder() does the converse in one step, so
        the two never both go ahead; neither waits while holding what the
        other needs, so they cannot deadlock."""
        try:
            table = self._table_now()
        except BaseException:
            _semop_now(entry.id, _permit_ops(+1, count, undo))
            raise
        slot = registry.slot_of(key, table.slots)
        err = _semop_now(table.id, [(_server(slot), 0, 0), (_lost(slot), 0, 0), (_fallback(slot), 1, _sysv.SEM_UNDO)])
        if err == 0:
            return Mark(table, _fallback(slot))
        _semop_now(entry.id, _permit_ops(+1, count, undo))
        if err in (errno.EIDRM, errno.EINVAL):
            return None  # the table was removed: _table_now() makes a fresh one
        if err != errno.EAGAIN:
            raise registry.io_error(f"semop on the table of holders (id {table.id})", err)
        # A process of this host still runs under a server permit of `key`:
        # wait until none does, then start again.
        try:
            outcome = _semop_until(table.id, [(_server(slot), 0, 0), (_lost(slot), 0, 0)], deadline, cancel)
        except OSError as e:
            raise registry.io_error(f"semop on the table of holders (id {table.id})", e.errno or 0) from None
        if outcome == _TIMED_OUT:
            raise Timeout(
                f"timed out waiting for {count} permits of `{key}`: processes of this host still hold it from the "
                "server"
            )
        if outcome == _CANCELLED:
            raise Cancelled(f"waiting for `{key}` was cancelled")
        return None

    def mark_server_holder(self, key: str, timeout: float | None, cancel: CancelToken | None = None) -> Mark:
        """Counts a permit of ``key`` granted by the server to this process in
        the host-wide table, waiting (up to ``timeout``, like acquire) until no
        fallback permit and no lost server permit of ``key`` is held on the
        host. Raises Timeout, Cancelled or IoError."""
        deadline = _deadline_of(timeout)
        while True:
            table = self._table_now()
            slot = registry.slot_of(key, table.slots)
            # No fallback holder and no lost server permit still held, and
            # then one more server holder, in one step.
            ops = [(_fallback(slot), 0, 0), (_lost(slot), 0, 0), (_server(slot), 1, _sysv.SEM_UNDO)]
            try:
                outcome = _semop_until(table.id, ops, deadline, cancel)
            except OSError as e:
                raise registry.io_error(f"semop on the table of holders (id {table.id})", e.errno or 0) from None
            if outcome == _DONE:
                return Mark(table, _server(slot))
            if outcome == _TIMED_OUT:
                raise Timeout(
                    f"processes of this host still hold `{key}` from a fallback (a host-local semaphore while no "
                    "server was reachable) or under a lost server permit"
                )
            if outcome == _CANCELLED:
                raise Cancelled(f"waiting for `{key}` was cancelled")
            # _REMOVED: _table_now() makes a fresh one

    def mark_lost(self, mark: Mark) -> None:
        """Turns the mark of a server permit into the mark of a lost one.
        Never blocks (for the reader thread); does nothing to a mark that is
        not a live server mark of this process."""
        with mark._lock:
            if (
                mark._spent
                or mark._pid != os.getpid()
                or mark.index % registry.PER_SLOT != 0
                or not registry.is_live_table(mark.table)
            ):
                return
            slot = mark.index // registry.PER_SLOT
            ops = [(_server(slot), -1, _sysv.SEM_UNDO), (_lost(slot), 1, _sysv.SEM_UNDO)]
            if _semop_now(mark.table.id, ops) == 0:
                mark.index = _lost(slot)

    def unmark(self, mark: Mark | None) -> None:
        """Drops a mark of this process (once; later calls do nothing). A mark
        on a table that was removed meanwhile went with it."""
        if mark is None:
            return
        with mark._lock:
            if mark._spent:
                return
            mark._spent = True
            if mark._pid != os.getpid() or not registry.is_live_table(mark.table):
                return
            _semop_now(mark.table.id, [(mark.index, -1, _sysv.SEM_UNDO)])

    def release(self, key: str, count: int, grant: LocalGrant) -> None:
        """Gives back ``count`` permits that ``acquire`` granted as ``grant``
        in this process. Raises NotHeld, changing nothing, when this process
        holds fewer there (through this object), or when the grant's
        semaphore is no longer ``key``'s (removed by ``remove`` or ipcrm: its
        permits were lost with it). Does not unmark ``grant.mark``."""
        count = _check_int("count", count)
        if count < 1:
            raise InvalidArgument(f"count {count} is below 1")
        with self._lock:
            self._check_fork()
            cached = self._entries.get(key)
            if cached is None or cached.entry.id != grant.id or cached.entry.ctime != grant.ctime:
                # Another semaphore is `key`'s now: adding to it would hand out
                # a permit that someone else's grant already counts.
                raise NotHeld(f"the permits of `{key}` were lost: its semaphore (id {grant.id}) was removed")
            if cached.held < count:
                raise NotHeld(f"releasing {count} permits of `{key}`, this process holds {cached.held}")
            if not registry.is_live(grant.id, grant.ctime):
                raise NotHeld(f"the permits of `{key}` were lost: its semaphore (id {grant.id}) was removed")
            cached.held -= count
            semid = cached.entry.id
        # SEM_UNDO on the way back too: it cancels the adjustment the acquire
        # made, so exiting later gives nothing back twice.
        err = _semop_now(semid, _permit_ops(+1, count, undo=True))
        if err in (errno.EIDRM, errno.EINVAL):
            raise NotHeld(f"the permits of `{key}` were lost: its semaphore was removed")
        if err != 0:
            raise registry.io_error(f"semop on local semaphore `{key}` (id {semid})", err)

    def post(self, key: str, limit: int, count: int) -> None:
        """Adds ``count`` permits; Overflow when value + held + count would
        exceed the semaphore's limit (held: permits acquired, not released,
        host-wide). Posts are serialized host-wide by the name's file lock,
        so two cannot overshoot together."""
        count = _check_int("count", count)
        if count < 1:
            raise InvalidArgument(f"count {count} is below 1")
        while True:
            entry = self._semaphore(key, limit)
            try:
                locked: registry.LockedFile | None = registry.lock_entry(entry.file)
            except IoError:
                # A file gone since _semaphore() looked was removed with its
                # semaphore (netsem local clean, remove_all): look again.
                if entry.file.exists():
                    raise
                locked = None
            if locked is not None:
                with locked:
                    if registry.is_live(entry.id, entry.ctime):
                        # Free plus held stays put under acquires, releases and
                        # crashes (they move permits between the two in one
                        # semop); only waits lower it.
                        try:
                            value = _sysv.getval(entry.id, _FREE)
                            held = _sysv.getval(entry.id, _HELD)
                        except OSError as e:
                            raise registry.io_error(f"semctl(GETVAL) of semaphore {entry.id}", e.errno or 0) from None
                        if value + held + count > entry.limit:
                            raise Overflow(
                                f"posting {count} permits of `{key}` would make {value + count} free and {held} "
                                f"held, above its limit {entry.limit}"
                            )
                        err = _semop_now(entry.id, _permit_ops(+1, count, undo=False))
                        if err != 0:
                            raise registry.io_error(f"semop on local semaphore `{key}` (id {entry.id})", err)
                        return
            # Removed or replaced since _semaphore() looked. Forgotten only
            # once the file lock is gone: _semaphore() takes the object's lock
            # first, then file locks.
            self._forget(key, entry.id)

    def value(self, key: str, limit: int) -> int:
        """Free permits now."""
        entry = self._semaphore(key, limit)
        try:
            return _sysv.getval(entry.id, _FREE)
        except OSError as e:
            raise registry.io_error(f"semctl(GETVAL) of semaphore {entry.id}", e.errno or 0) from None

    def info(self, key: str, limit: int) -> LocalInfo:
        """What ``key``'s semaphore holds now: free, held (host-wide), waiting."""
        entry = self._semaphore(key, limit)
        try:
            return LocalInfo(
                _sysv.getval(entry.id, _FREE), _sysv.getval(entry.id, _HELD), _sysv.getncnt(entry.id, _FREE)
            )
        except OSError as e:
            raise registry.io_error(f"semctl of semaphore {entry.id}", e.errno or 0) from None

    def current(self, key: str) -> LocalGrant:
        """``key``'s semaphore as this object last saw it, as a grant for
        ``release``; a grant ``release`` refuses when it has not used ``key``."""
        with self._lock:
            self._check_fork()
            cached = self._entries.get(key)
            if cached is None:
                return LocalGrant(-1, 0)
            return LocalGrant(cached.entry.id, cached.entry.ctime)

    def system_v_id(self, key: str, limit: int) -> int:
        """The System V id of ``key``'s semaphore (made as by acquire when
        missing), as ``ipcs -s`` shows it."""
        return self._semaphore(key, limit).id

    def remove(self, key: str) -> None:
        """Removes ``key``'s semaphore. Its holders lose their permits
        (release raises NotHeld) and its waiters move to a fresh semaphore,
        which the next use makes with all permits free. Nothing to do when
        there is none."""
        with self._lock:
            self._entries.pop(key, None)
            self._registry.remove(key)

    def remove_all(self) -> None:
        """Removes every semaphore of the registry, the table of holders, and
        the registry files (the directory stays). Meant for clean-up when
        nothing uses them; concurrent users fare as with ``remove``."""
        with self._lock:
            self._entries.clear()
            self._table = None
            self._registry.remove_all()

