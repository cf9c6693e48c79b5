"""The registry of local semaphores: the directory that maps each name to its
System V semaphore, shared with libnetsem (src/client/local_registry.{h,cc}).

System V keys are small integers, so every name has a registry file, named
after the 64-bit FNV-1a hash of the name's UTF-8 bytes, that records the id
of the semaphore made for it. A file is read or written only under its
flock, so every process of the user, Python or C++, agrees on one semaphore
per name. An entry is stale when its id is gone or was reused for another
semaphore (ids are reused after IPC_RMID and from zero after a reboot);
``is_live`` tells, and ``find_or_make`` replaces a stale entry with a fresh
semaphore. The host-wide table of holders (server permits and fallback) is
recorded here too, in the file ``holders``.

Everything a C++ process must agree on (directory rules, file names, the two
record formats, the liveness checks, the semop sequences) is stated once, in
docs/local-semaphores.md, "The format both clients follow"; this file and
local_registry.cc follow it.

Registry file of a name (the key last, so that it may hold any byte):

    netsem-local 2
    id 32769
    ctime 1712345678
    limit 2
    key $build-slots

Table of holders, in the file ``holders``:

    netsem-holders 1
    id 32770
    ctime 1712345678
    slots 4096

Thread safety: the module functions from any thread. A ``LocalRegistry``
remembers that its directory was checked, so one object is used under one
lock held by its owner (``LocalSemaphores``); other objects and other
processes are kept in step by the file locks.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat as stat_module
from dataclasses import dataclass
from pathlib import Path

from netsem import _sysv
from netsem.errors import IoError, NetsemError

# The largest value a System V semaphore holds (SEMVMX): no entry records a larger limit.
MAX_LIMIT = _sysv.SEMVMX
HOLDERS_FILE = "holders"
# Semaphores per slot of the table of holders: server, fallback, lost.
PER_SLOT = 3

_MAGIC = b"netsem-local 2\n"
_TABLE_MAGIC = b"netsem-holders 1\n"
# Keys sharing a 64-bit hash are vanishingly rare; this only bounds the scan.
_MAX_COLLISIONS = 64
_MAX_RECORD_BYTES = 4096
_INT_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_ENTRY_NAME = re.compile(r"[0-9a-f]{16}(-[0-9]+)?")
_NUMBER = re.compile(rb"-?[0-9]+")


def io_error(what: str, err: int) -> IoError:
    """IoError "<what>: <strerror(err)>", as libnetsem words it."""
    return IoError(f"{what}: {os.strerror(err)}")


def key_bytes(key: str) -> bytes:
    """The bytes a name is hashed and recorded as: its UTF-8 encoding (the
    bytes a C++ caller passes for the same name)."""
    return key.encode("utf-8", "surrogateescape")


def fnv1a64(data: bytes) -> int:
    """The 64-bit FNV-1a hash."""
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def entry_file_name(key: str) -> str:
    """The registry file of ``key``: 16 hex digits of its FNV-1a hash (a
    colliding key gets "-1", "-2", ... appended)."""
    return f"{fnv1a64(key_bytes(key)):016x}"


def slot_of(key: str, slots: int) -> int:
    """The slot of ``key`` in a table of holders of ``slots`` slots."""
    return fnv1a64(key_bytes(key)) % slots


@dataclass(frozen=True)
class Entry:
    """Where one name's semaphore is, as its registry file records it."""

    id: int
    ctime: int  # sem_ctime when recorded: tells a reused id apart
    limit: int  # the semaphore's recorded limit
    file: Path  # its registry file


@dataclass(frozen=True)
class Table:
    """The table of holders: one set of PER_SLOT * slots semaphores."""

    id: int
    ctime: int
    slots: int


@dataclass(frozen=True)
class _Record:
    id: int
    ctime: int
    limit: int
    key: bytes


def _format_record(record: _Record) -> bytes:
    return (
        _MAGIC + f"id {record.id}\nctime {record.ctime}\nlimit {record.limit}\n".encode() + b"key " + record.key + b"\n"
    )


def _parse_field(lines: list[bytes], word: bytes, low: int, high: int) -> int | None:
    """One "<word> <integer>" line, taken off the front of ``lines``."""
    if not lines:
        return None
    line = lines.pop(0)
    if not line.startswith(word + b" "):
        return None
    digits = line[len(word) + 1 :]
    if not _NUMBER.fullmatch(digits):
        return None
    value = int(digits)
    return value if low <= value <= high else None


def _parse_record(text: bytes) -> _Record | None:
    """None for anything but a whole record: an empty file (a creator died
    before writing) or a torn write is treated as no entry."""
    if not text.startswith(_MAGIC):
        return None
    rest = text[len(_MAGIC) :]
    head = rest.split(b"\n", 3)
    if len(head) < 4:
        return None
    fields = head[:3]
    semid = _parse_field(fields, b"id", -(2**31), _INT_MAX)
    ctime = _parse_field(fields, b"ctime", -(2**63), _INT64_MAX)
    limit = _parse_field(fields, b"limit", -(2**63), _INT64_MAX)
    if semid is None or ctime is None or limit is None or semid < 0 or not 1 <= limit <= MAX_LIMIT:
        return None
    tail = head[3]
    if not tail.startswith(b"key ") or len(tail) < 6 or not tail.endswith(b"\n"):
        return None
    return _Record(semid, ctime, limit, tail[4:-1])


def _format_table(table: Table) -> bytes:
    return _TABLE_MAGIC + f"id {table.id}\nctime {table.ctime}\nslots {table.slots}\n".encode()


def _parse_table(text: bytes) -> Table | None:
    if not text.startswith(_TABLE_MAGIC):
        return None
    lines = text[len(_TABLE_MAGIC) :].split(b"\n")
    if len(lines) != 4 or lines[3] != b"":
        return None
    semid = _parse_field(lines, b"id", -(2**31), _INT_MAX)
    ctime = _parse_field(lines, b"ctime", -(2**63), _INT64_MAX)
    slots = _parse_field(lines, b"slots", -(2**31), _INT_MAX)
    if semid is None or ctime is None or slots is None or semid < 0 or slots < 1:
        return None
    return Table(semid, ctime, slots)


def own_semaphore_ctime(semid: int, nsems: int = 2) -> int | None:
    """sem_ctime of ``semid`` when it is a set of ``nsems`` semaphores of this
    user; None when the id is gone or is not such a set."""
    try:
        ds = _sysv.stat(semid)
    except OSError:
        return None
    uid = os.geteuid()
    if ds.sem_perm.uid != uid or ds.sem_perm.cuid != uid or ds.sem_nsems != nsems:
        return None
    return int(ds.sem_ctime)


def is_live(semid: int, ctime: int) -> bool:
    """True when ``semid`` is still the two-semaphore set (free permits, held
    permits) of this user that an entry recorded with sem_ctime ``ctime``."""
    return own_semaphore_ctime(semid) == ctime


def is_live_table(table: Table) -> bool:
    """True when ``table`` is still the set that was recorded."""
    return table.slots > 0 and own_semaphore_ctime(table.id, PER_SLOT * table.slots) == table.ctime


class LockedFile:
    """A registry file, open and flocked until closed (a context manager)."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # drops the flock
            self.fd = -1

    def __enter__(self) -> LockedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self) -> bytes:
        """At most the first 4096 bytes: no record is longer."""
        try:
            return os.pread(self.fd, _MAX_RECORD_BYTES, 0)
        except OSError as e:
            raise io_error(f"{self.path}: cannot read", e.errno or 0) from None

    def write(self, text: bytes) -> None:
        try:
            os.ftruncate(self.fd, 0)
        except OSError as e:
            raise io_error(f"{self.path}: cannot truncate", e.errno or 0) from None
        done = 0
        while done < len(text):
            try:
                done += os.pwrite(self.fd, text[done:], done)
            except OSError as e:
                raise io_error(f"{self.path}: cannot write", e.errno or 0) from None


def open_locked(path: Path, create: bool) -> LockedFile:
    """Opens and locks ``path`` (created when ``create``), retrying when
    remove_all() unlinked it between our open and our lock: a record written
    to an unlinked file would be lost to every other process."""
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
    while True:
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as e:
            raise io_error(f"{path}: cannot open", e.errno or 0) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            links = os.fstat(fd).st_nlink
        except OSError as e:
            os.close(fd)
            raise io_error(f"{path}: cannot lock", e.errno or 0) from None
        if links > 0:
            return LockedFile(fd, path)
        os.close(fd)


def lock_entry(path: Path) -> LockedFile:
    """Opens and locks the registry file of an entry (it must exist), for a
    caller that keeps other processes off that entry for a while (posters
    check the value and add to it under this lock)."""
    return open_locked(path, create=False)


def _set_value(semid: int, limit: int) -> int:
    """Sets ``semid`` to ``limit`` free permits; its new sem_ctime."""
    try:
        _sysv.setval(semid, 0, limit)
    except OSError as e:
        raise io_error(f"semctl(SETVAL) of semaphore {semid}", e.errno or 0) from None
    ctime = own_semaphore_ctime(semid)
    if ctime is None:
        raise IoError(f"semctl(IPC_STAT) of semaphore {semid}: not a semaphore set of this user")
    return ctime


def _remove_quietly(semid: int) -> None:
    try:
        _sysv.rmid(semid)
    except OSError:
        pass


def _make_semaphore(key: bytes, limit: int) -> _Record:
    """A new semaphore with ``limit`` free permits."""
    try:
        semid = _sysv.semget_private(2)  # free permits, held permits (0)
    except OSError as e:
        name = key.decode("utf-8", "replace")
        raise io_error(
            f"semget for local semaphore `{name}` (see `ipcs -s` and docs/local-semaphores.md)", e.errno or 0
        ) from None
    try:
        ctime = _set_value(semid, limit)
    except NetsemError:
        _remove_quietly(semid)
        raise
    return _Record(semid, ctime, limit, key)


def _replace_if_idle(record: _Record, limit: int, locked: LockedFile) -> _Record:
    """Replaces an idle semaphore by one with ``limit`` free permits and
    records it, so that every process notices through its cached id going
    away. Taking every permit at once, with no permit counted as held, proves
    nobody holds one and keeps late arrivals out; SEM_UNDO gives them back if
    we die before the switch. Returns ``record`` unchanged, leaving
    everything as it was, while the semaphore is in use."""
    try:
        if _sysv.getncnt(record.id, 0) != 0:
            return record
        _sysv.semop(record.id, [(0, -record.limit, _sysv.IPC_NOWAIT | _sysv.SEM_UNDO)])
    except OSError:
        return record
    made: _Record | None = None
    try:
        made = _make_semaphore(record.key, limit)
        if _sysv.getval(record.id, 0) != 0 or _sysv.getval(record.id, 1) != 0:
            raise IoError("in use")
        locked.write(_format_record(made))
    except (OSError, NetsemError):
        if made is not None:
            _remove_quietly(made.id)
        try:
            _sysv.semop(record.id, [(0, record.limit, _sysv.SEM_UNDO)])
        except OSError:
            pass
        try:  # a failed write may have cut the file: put the old record back
            locked.write(_format_record(record))
        except NetsemError:
            pass
        return record
    _remove_quietly(record.id)  # late arrivals wake with EIDRM and look again
    return made


class LocalRegistry:
    """The registry in one directory, created (mode 0700) on first use when
    missing. A directory that is a symlink, is not owned by this user, or
    that others may write is refused: every method then raises IoError."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._dir_checked = False

    def check_dir(self) -> None:
        """Creates the registry directory or checks the existing one."""
        if self._dir_checked:
            return
        path = str(self.dir)
        try:
            os.mkdir(path, 0o700)
        except FileNotFoundError:
            try:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            except OSError:
                pass  # the mkdir below reports the failure
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            except OSError as e:
                raise io_error(f"{path}: cannot create", e.errno or 0) from None
        except FileExistsError:
            pass
        except OSError as e:
            raise io_error(f"{path}: cannot create", e.errno or 0) from None
        # lstat, not stat: in a shared /tmp, someone else's symlink must not
        # redirect our registry.
        try:
            st = os.lstat(path)
        except OSError as e:
            raise io_error(f"{path}: cannot stat", e.errno or 0) from None
        if not stat_module.S_ISDIR(st.st_mode):
            raise IoError(f"{path}: not a directory")
        if st.st_uid != os.geteuid():
            raise IoError(
                f"{path}: owned by uid {st.st_uid}, not by this user ({os.geteuid()}); "
                "refusing it as the local semaphore registry"
            )
        if st.st_mode & 0o022:
            raise IoError(
                f"{path}: others may write it (mode {st.st_mode & 0o7777:o}); refusing it as the local "
                "semaphore registry (chmod 700 it)"
            )
        self._dir_checked = True

    def _file(self, base: str, slot: int) -> Path:
        return self.dir / (base if slot == 0 else f"{base}-{slot}")

    def find_or_make(self, key: str, limit: int) -> Entry:
        """The semaphore of ``key``, made with ``limit`` free permits when its
        entry is missing, torn or stale. A live semaphore recorded with
        another limit is replaced by one with ``limit`` free permits only
        while it is idle; otherwise it keeps its limit, which the entry
        returned says. REQUIRES: key != "", 1 <= limit <= MAX_LIMIT.
        Raises IoError (directory, file or kernel), NetsemError (too many
        keys share the hash of ``key``)."""
        self.check_dir()
        data = key_bytes(key)
        base = entry_file_name(key)
        for slot in range(_MAX_COLLISIONS):
            path = self._file(base, slot)
            with open_locked(path, create=True) as locked:
                record = _parse_record(locked.read())
                if record is not None and record.key != data:
                    continue  # another key with the same hash
                if record is not None and is_live(record.id, record.ctime):
                    if record.limit != limit:
                        record = _replace_if_idle(record, limit, locked)
                    return Entry(record.id, record.ctime, record.limit, path)
                # Missing, torn or stale: the old id, if any, is gone or someone else's.
                made = _make_semaphore(data, limit)
                try:
                    locked.write(_format_record(made))
                except NetsemError:
                    _remove_quietly(made.id)
                    raise
                return Entry(made.id, made.ctime, made.limit, path)
        raise NetsemError(f"{self.dir}: {_MAX_COLLISIONS} registry entries share the hash of `{key}`")

    def find_or_make_table(self, slots: int) -> Table:
        """The host-wide table of holders, made with ``slots`` slots (fewer
        on a kernel whose SEMMSL is smaller) when missing or stale; a live
        table keeps the size it was made with."""
        self.check_dir()
        path = self.dir / HOLDERS_FILE
        with open_locked(path, create=True) as locked:
            table = _parse_table(locked.read())
            if table is not None and is_live_table(table):
                return table
            semid = -1
            size = slots
            failure = 0
            while size >= 1 and semid < 0:
                try:
                    semid = _sysv.semget_private(PER_SLOT * size)
                    slots = size
                except OSError as e:
                    failure = e.errno or 0
                    if failure != errno.EINVAL:
                        break
                size = max(125, size // 2) if size > 125 else 0
            if semid < 0:
                raise io_error(
                    "semget for the table of holders (see `ipcs -s` and docs/local-semaphores.md)", failure
                )
            ctime = own_semaphore_ctime(semid, PER_SLOT * slots)
            if ctime is None:
                _remove_quietly(semid)
                raise IoError(f"semctl(IPC_STAT) of semaphore {semid}: not a semaphore set of this user")
            made = Table(semid, ctime, slots)
            try:
                locked.write(_format_table(made))
            except NetsemError:
                _remove_quietly(semid)
                raise
            return made

    def remove(self, key: str) -> None:
        """Removes ``key``'s semaphore, keeping its (now stale) entry: the
        next use recreates from it, and deleting the file could reorder a
        chain of colliding keys. Nothing to do when there is none."""
        self.check_dir()
        data = key_bytes(key)
        base = entry_file_name(key)
        for slot in range(_MAX_COLLISIONS):
            path = self._file(base, slot)
            if not path.exists():
                return
            with open_locked(path, create=False) as locked:
                record = _parse_record(locked.read())
                if record is None or record.key != data:
                    continue
                if is_live(record.id, record.ctime):
                    try:
                        _sysv.rmid(record.id)
                    except OSError as e:
                        raise io_error(f"semctl(IPC_RMID) of semaphore {record.id}", e.errno or 0) from None
                return

    def remove_all(self) -> None:
        """Removes every semaphore of the registry, the table of holders, and
        every registry file (the directory stays). Goes on after an error and
        raises the first one."""
        self.check_dir()
        try:  # listed first: unlinking while iterating may skip entries
            names = [n for n in os.listdir(self.dir) if _ENTRY_NAME.fullmatch(n) or n == HOLDERS_FILE]
        except OSError as e:
            raise io_error(f"{self.dir}: cannot list", e.errno or 0) from None
        first: NetsemError | None = None
        for name in names:
            path = self.dir / name
            try:
                locked = open_locked(path, create=False)
            except NetsemError as e:
                first = first or e
                continue
            with locked:
                try:
                    text = locked.read()
                except NetsemError as e:
                    first = first or e
                    text = b""
                record = _parse_record(text)
                if record is not None and is_live(record.id, record.ctime):
                    try:
                        _sysv.rmid(record.id)
                    except OSError as e:
                        first = first or io_error(f"semctl(IPC_RMID) of semaphore {record.id}", e.errno or 0)
                table = _parse_table(text)
                if table is not None and is_live_table(table):
                    try:
                        _sysv.rmid(table.id)
                    except OSError as e:
                        first = first or io_error(f"semctl(IPC_RMID) of semaphore {table.id}", e.errno or 0)
                # Unlinked while locked: open_locked() sends anyone queued on
                # this lock back to a fresh file.
                try:
                    os.unlink(path)
                except OSError as e:
                    first = first or io_error(f"{path}: cannot remove", e.errno or 0)
        if first is not None:
            raise first
