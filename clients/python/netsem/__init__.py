"""netsem: named counting semaphores shared over TCP, from Python.

The public API lives here; the modules behind it are:
- ``errors``: the exceptions, one per libnetsem status code;
- ``_cancel``: CancelToken, to cancel a blocked call from another thread;
- ``_protocol``: protocol v1 without I/O (names, request lines, answers);
- ``_options``: the ``[client]`` configuration and ``NETSEM_*`` environment;
- ``_tls``: the TLS context of a client (ssl), and what a failed handshake means;
- ``client``: the blocking Client and its Permit;
- ``aio``: the same client for asyncio;
- ``_local``: host-wide local semaphores (``$`` names, fallback), shared
  with libnetsem through the kernel's System V semaphores;
- ``ace``: a drop-in for ACE's NetworkSemaphoreClient.
"""

from netsem._cancel import CancelToken

# pycore: the blocking Client (netsem.client), its options (netsem._options) and
# the protocol's info records (netsem._protocol)
from netsem._options import ClientOptions, FallbackPolicy
from netsem._protocol import HolderInfo, SemaphoreInfo, SessionInfo, WaiterInfo
from netsem.client import Client, ClientStats, Permit
from netsem.errors import (
    AlreadyExists,
    Busy,
    Cancelled,
    Denied,
    InvalidArgument,
    IoError,
    LimitReached,
    NetsemError,
    NotFound,
    NotHeld,
    Overflow,
    ProtocolError,
    Shutdown,
    Timeout,
    TooMany,
    Unavailable,
)

__version__ = "0.1.0"


# pyaio: `netsem.aio` (the asyncio client) after a plain `import netsem`,
# imported on first use so that blocking programs do not load asyncio.
def __getattr__(name: str) -> object:
    if name == "aio":
        import netsem.aio

        return netsem.aio
    raise AttributeError(f"module 'netsem' has no attribute {name!r}")


__all__ = [
    "AlreadyExists",
    "Busy",
    "CancelToken",
    "Cancelled",
    "Client",
    "ClientOptions",
    "ClientStats",
    "Denied",
    "FallbackPolicy",
    "HolderInfo",
    "InvalidArgument",
    "IoError",
    "LimitReached",
    "NetsemError",
    "NotFound",
    "NotHeld",
    "Overflow",
    "Permit",
    "ProtocolError",
    "SemaphoreInfo",
    "SessionInfo",
    "Shutdown",
    "Timeout",
    "TooMany",
    "Unavailable",
    "WaiterInfo",
    "__version__",
]
