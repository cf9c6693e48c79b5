"""The kernel's System V semaphores through ctypes, for the local semaphores.

A thin layer over glibc's ``semget``, ``semop``, ``semtimedop`` and
``semctl`` (IPC_STAT, GETVAL, GETNCNT, SETVAL, IPC_RMID): each function
raises ``OSError`` with the call's errno when it fails and does nothing else,
so that ``_local_registry`` and ``_local`` decide what an errno means, as
src/client/local_registry.cc and local_semaphores.cc do with the same calls.

The layouts of ``struct sembuf``, ``struct timespec`` and ``struct
semid_ds`` are those of glibc on 64-bit Linux: x86_64 (whose ``semid_ds``
keeps a high word after each time) and the generic layout of aarch64 and the
other 64-bit ports. ctypes releases the GIL around each call, so a thread
blocked in ``semop`` does not stop the others.

Thread safety: every function from any thread.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from collections.abc import Sequence

# <sys/ipc.h>, <sys/sem.h> (Linux, every architecture).
IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_NOWAIT = 0o4000
IPC_RMID = 0
IPC_STAT = 2
GETVAL = 12
GETNCNT = 14
SETVAL = 16
SEM_UNDO = 0x1000

# The largest value a semaphore holds (SEMVMX).
SEMVMX = 32767


class Sembuf(ctypes.Structure):
    """``struct sembuf``: one operation of a semop."""

    _fields_ = [("sem_num", ctypes.c_ushort), ("sem_op", ctypes.c_short), ("sem_flg", ctypes.c_short)]


class Timespec(ctypes.Structure):
    """``struct timespec`` (64-bit time_t)."""

    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class IpcPerm(ctypes.Structure):
    """glibc's ``struct ipc_perm`` on 64-bit Linux (bits/ipc-perm.h)."""

    _fields_ = [
        ("key", ctypes.c_int),
        ("uid", ctypes.c_uint),
        ("gid", ctypes.c_uint),
        ("cuid", ctypes.c_uint),
        ("cgid", ctypes.c_uint),
        ("mode", ctypes.c_uint),
        ("seq", ctypes.c_ushort),
        ("pad2", ctypes.c_ushort),
        ("reserved1", ctypes.c_ulong),
        ("reserved2", ctypes.c_ulong),
    ]


if platform.machine() in ("x86_64", "AMD64"):

    class SemidDs(ctypes.Structure):
        """glibc's ``struct semid_ds`` on x86_64 (bits/types/struct_semid_ds.h)."""

        _fields_ = [
            ("sem_perm", IpcPerm),
            ("sem_otime", ctypes.c_long),
            ("sem_otime_high", ctypes.c_ulong),
            ("sem_ctime", ctypes.c_long),
            ("sem_ctime_high", ctypes.c_ulong),
            ("sem_nsems", ctypes.c_ulong),
            ("reserved3", ctypes.c_ulong),
            ("reserved4", ctypes.c_ulong),
        ]

else:

    class SemidDs(ctypes.Structure):  # type: ignore[no-redef]
        """glibc's generic 64-bit ``struct semid_ds`` (aarch64, ...)."""

        _fields_ = [
            ("sem_perm", IpcPerm),
            ("sem_otime", ctypes.c_long),
            ("sem_ctime", ctypes.c_long),
            ("sem_nsems", ctypes.c_ulong),
            ("reserved3", ctypes.c_ulong),
            ("reserved4", ctypes.c_ulong),
        ]


# The layouts above hold only where long and pointers are 64 bits; elsewhere
# every call fails with the reason rather than misreading the kernel.
SUPPORTED = sys.platform.startswith("linux") and ctypes.sizeof(ctypes.c_long) == 8
UNSUPPORTED_REASON = (
    f"host-local semaphores need 64-bit Linux (this is {sys.platform} {platform.machine()}, "
    f"{8 * ctypes.sizeof(ctypes.c_long)}-bit)"
)

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        if not SUPPORTED:
            raise OSError(0, UNSUPPORTED_REASON)
        lib = ctypes.CDLL(None, use_errno=True)
        lib.semget.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.semget.restype = ctypes.c_int
        lib.semop.argtypes = [ctypes.c_int, ctypes.POINTER(Sembuf), ctypes.c_size_t]
        lib.semop.restype = ctypes.c_int
        lib.semtimedop.argtypes = [ctypes.c_int, ctypes.POINTER(Sembuf), ctypes.c_size_t, ctypes.POINTER(Timespec)]
        lib.semtimedop.restype = ctypes.c_int
        # semctl is variadic; its fourth argument (union semun: an int or a
        # pointer) travels in one integer register on 64-bit Linux.
        lib.semctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
        lib.semctl.restype = ctypes.c_int
        _libc = lib
    return _libc


def _fail() -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err))


def semget_private(nsems: int) -> int:
    """A new set of ``nsems`` semaphores (all 0), mode 0600: its id."""
    rc = _lib().semget(IPC_PRIVATE, nsems, IPC_CREAT | 0o600)
    if rc < 0:
        raise _fail()
    return rc


def stat(semid: int) -> SemidDs:
    """IPC_STAT of ``semid``."""
    ds = SemidDs()
    if _lib().semctl(semid, 0, IPC_STAT, ctypes.addressof(ds)) != 0:
        raise _fail()
    return ds


def getval(semid: int, num: int) -> int:
    """GETVAL of semaphore ``num`` of the set."""
    rc = _lib().semctl(semid, num, GETVAL, None)
    if rc < 0:
        raise _fail()
    return rc


def getncnt(semid: int, num: int) -> int:
    """GETNCNT: processes blocked until semaphore ``num`` grows."""
    rc = _lib().semctl(semid, num, GETNCNT, None)
    if rc < 0:
        raise _fail()
    return rc


def setval(semid: int, num: int, value: int) -> None:
    """SETVAL of semaphore ``num`` (clears every process's undo adjustment of it)."""
    if _lib().semctl(semid, num, SETVAL, value) != 0:
        raise _fail()


def rmid(semid: int) -> None:
    """IPC_RMID: removes the set; its waiters wake with EIDRM."""
    if _lib().semctl(semid, 0, IPC_RMID, None) != 0:
        raise _fail()


def semop(semid: int, ops: Sequence[tuple[int, int, int]], timeout: float | None = None) -> None:
    """The operations ``(num, op, flags)`` at once, as one semop.

    ``timeout`` None blocks until they can all be done (semop); else waits at
    most that many seconds (semtimedop; EAGAIN when it ran out). Raises
    OSError: EAGAIN (IPC_NOWAIT or timeout), EINTR (a signal), EIDRM or
    EINVAL (the set was removed), ERANGE (a value above SEMVMX), ...
    """
    array = (Sembuf * len(ops))(*(Sembuf(num, op, flags) for num, op, flags in ops))
    if timeout is None:
        rc = _lib().semop(semid, array, len(ops))
    else:
        seconds = max(0.0, timeout)
        whole = int(seconds)
        spec = Timespec(whole, min(999_999_999, int((seconds - whole) * 1e9)))
        rc = _lib().semtimedop(semid, array, len(ops), ctypes.byref(spec))
    if rc != 0:
        raise _fail()
