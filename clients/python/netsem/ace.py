"""netsem.ace: a drop-in for ACE's network semaphore client.

ACE's Python callers use ``NetworkSemaphoreClient`` and ``NetworkSemaphore``;
this module has the same class names, constructors, methods, attributes and
return conventions, so that an ACE installation switches them by changing an
import::

    from netsem.ace import NetworkSemaphore, NetworkSemaphoreClient

    client = NetworkSemaphoreClient(cancel_request_callback=engine_is_stopping)
    if client.acquire("pcap", timeout=30):       # True: held; False: timed out, cancelled, failed
        try:
            run_pcap_query()
        finally:
            client.release()

    with NetworkSemaphore("pcap"):               # RuntimeError when it cannot be acquired
        run_pcap_query()

What changes underneath: instead of a socket per acquire in ACE's own
dialect, every instance of a process shares one ``netsem.Client`` (protocol
v1, one multiplexed connection, pings that keep held permits alive), so the
timeout runs on the server (the request leaves the queue when it expires)
and a cancel sends CANCEL at once. While no server can be reached, acquires
fall back exactly as libnetsem's do (per the name's fallback policy, on the
host-wide local semaphores that C++ and Python processes share), where
ACE's own client used a semaphore private to each process.

Configuration (``configure``): by default the environment, as libnetsem reads
it (``NETSEM_CONFIG``, ``NETSEM_SERVER``, ``NETSEM_FALLBACK``,
``NETSEM_LABEL``). ``NETSEM_CONFIG`` (or ``configure(config=...)``) may name
ACE's own configuration file: the server is then its
``[service_network_semaphore]`` ``remote_address``:``remote_port``, as ACE's
client reads it, and the fallback limits are its ``semaphore_<name>``
entries, as ACE's fallback semaphores take them (a ``[semaphores]`` entry of
a netsem file wins; other names have limit 1). A ``[client]`` section of the
file (or NETSEM_TLS*, NETSEM_TOKEN*) gives TLS and the token, as to every
client (docs/python.md, "TLS and tokens"); a refusal answers False.

Like ACE's, ``acquire`` and ``release`` never raise: failures are logged (to
the ``netsem.ace`` logger) and ``acquire`` answers False. An instance holds
at most one permit and is used by one thread at a time, as in ACE; the
shared Client behind the instances is thread-safe.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from netsem import errors
from netsem._cancel import CancelToken
from netsem._options import ClientOptions, _add_ace_limits, _Ini
from netsem.client import Client, Permit

__all__ = [
    "NetworkSemaphore",
    "NetworkSemaphoreClient",
    "ace_fallback_limits",
    "close",
    "configure",
    "initialize_fallback_semaphores",
    "semaphores_enabled",
    "set_semaphores_enabled",
    "shared_client",
]

log = logging.getLogger("netsem.ace")

ACE_SECTION = "service_network_semaphore"
SEMAPHORE_PREFIX = "semaphore_"
# How often a cancel_request_callback is asked whether to give up: ACE's
# client asked it after each server message (about once a second) and its
# fallback every 0.1 s.
CANCEL_POLL_INTERVAL = 0.1
# How often the failsafe monitor logs that a permit is still held, as ACE's
# does (keep-alives are the Client's pings; the monitor sends nothing).
FAILSAFE_INTERVAL = 3.0

_lock = threading.Lock()
_shared: Client | None = None  # guarded by _lock
_options: ClientOptions | None = None  # guarded by _lock; None: from the environment
_enabled = True  # guarded by _lock


def ace_fallback_limits(path: str | os.PathLike[str]) -> dict[str, int]:
    """The fallback limits an ACE configuration file gives: ``semaphore_<name> = N``
    of its ``[service_network_semaphore]`` section (and ``[DEFAULT]``), keys
    folded to lower case as ACE and netsemd fold them, limits below 1 made 1
    as in ACE's fallback. Empty for a file without that section;
    InvalidArgument naming file:line for a limit that is no whole number.
    ``ClientOptions.from_file`` reads them the same way for every client
    (libnetsem too), so ``Client(config=...)`` needs nothing more."""
    ini = _Ini.read(os.fspath(path))
    section = ini.find(ACE_SECTION)
    if section is None:
        return {}
    options = ClientOptions()
    _add_ace_limits(ini, section, options)
    return options.limits


def _options_from(config: str | os.PathLike[str] | None) -> ClientOptions:
    """ClientOptions from a file (or the environment's NETSEM_CONFIG); an ACE
    file's semaphore_<name> limits are among them (ClientOptions.from_file)."""
    if config is None:
        return ClientOptions.from_environment()
    return ClientOptions.from_file(config)


def configure(
    config: str | os.PathLike[str] | None = None,
    *,
    servers: str | list[str] | None = None,
    options: ClientOptions | None = None,
) -> None:
    """Sets where the shared Client connects, for the instances made after it.

    ``options`` is used as is; else ``config`` names a netsem or ACE
    configuration file (else the environment is read), and ``servers``
    (``"host:port"`` or a list) overrides its servers. The Client the
    earlier instances use is closed (permits it granted are lost), so call
    this at start-up, as ACE calls initialize_fallback_semaphores().
    Raises InvalidArgument for a file or option that cannot be used.
    """
    if options is None:
        options = _options_from(config)
        if servers is not None:
            options.servers = [servers] if isinstance(servers, str) else list(servers)
    global _shared, _options
    with _lock:
        old, _shared, _options = _shared, None, options
    if old is not None:
        old.close()


def close() -> None:
    """Closes the shared Client (its permits are given back, or lost); the
    next acquire makes a new one with the same configuration."""
    global _shared
    with _lock:
        old, _shared = _shared, None
    if old is not None:
        old.close()


def initialize_fallback_semaphores(config: str | os.PathLike[str] | None = None) -> None:
    """ACE's start-up call: reads the configuration (as ``configure(config)``)
    so that the fallback limits are known before the first acquire."""
    configure(config)


def shared_client() -> Client:
    """The Client every NetworkSemaphoreClient of this process uses (made on first use)."""
    global _shared
    with _lock:
        if _shared is None:
            options = _options if _options is not None else _options_from(None)
            _shared = Client(options=options)
        return _shared


def set_semaphores_enabled(enabled: bool) -> None:
    """ACE's G_SEMAPHORES_ENABLED: while False, ``with NetworkSemaphore(name)``
    acquires nothing (NetworkSemaphoreClient.acquire is unaffected, as in ACE)."""
    global _enabled
    with _lock:
        _enabled = enabled


def semaphores_enabled() -> bool:
    """Whether ``with NetworkSemaphore(name)`` acquires (default True)."""
    with _lock:
        return _enabled


class NetworkSemaphoreClient:
    """Holds at most one permit of one name, as ACE's client does.

    Attributes, as in ACE: ``semaphore_acquired`` (a permit is held),
    ``semaphore_name``, ``fallback_semaphore`` (the permit when it was
    served locally because no server could be reached, else None),
    ``cancel_request_flag``, ``cancel_request_callback``, ``failsafe_thread``
    and ``release_event`` (the monitor that logs the hold time), ``config``
    (the ClientOptions in use) and ``socket`` (always None: the shared Client
    owns the connection). Also ``permit``: the netsem Permit while held.
    """

    def __init__(
        self, cancel_request_callback: Callable[[], bool] | None = None, *, client: Client | None = None
    ) -> None:
        """``cancel_request_callback()`` returning True gives up a pending acquire;
        ``client`` replaces the process's shared Client (for tests and embedders)."""
        self.socket: Any = None
        self.semaphore_acquired = False
        self.semaphore_name: str | None = None
        self.failsafe_thread: threading.Thread | None = None
        self.release_event: threading.Event | None = None
        self.fallback_semaphore: Permit | None = None
        self.cancel_request_flag = False
        self.cancel_request_callback = cancel_request_callback
        self.permit: Permit | None = None
        self._client = client
        self._token: CancelToken | None = None  # the pending acquire's

    @property
    def config(self) -> ClientOptions | None:
        """The options of the Client in use (None until one is made)."""
        client = self._client
        if client is None:
            with _lock:
                client = _shared
        return None if client is None else getattr(client, "options", None)

    @property
    def request_is_cancelled(self) -> bool:
        """True once cancel_request() was called or cancel_request_callback() answers True."""
        return self.cancel_request_flag or (
            self.cancel_request_callback is not None and bool(self.cancel_request_callback())
        )

    def acquire(self, semaphore_name: str, timeout: float | None = None) -> bool:
        """Waits for one permit of ``semaphore_name``: True once held, False when
        ``timeout`` seconds ran out (None waits for ever, 0 only tries), the
        request was cancelled, or it failed (logged). True at once, with a
        warning, when this instance already holds a permit."""
        if self.semaphore_acquired:
            log.warning("semaphore %s already acquired", self.semaphore_name)
            return True
        if self.request_is_cancelled:
            log.debug("semaphore request for %s cancelled", semaphore_name)
            return False
        token = CancelToken()
        self._token = token
        done = threading.Event()
        watcher: threading.Thread | None = None
        if self.cancel_request_callback is not None:
            watcher = threading.Thread(
                target=self._watch_cancel, args=(token, done), name=f"netsem.ace cancel {semaphore_name}", daemon=True
            )
            watcher.start()
        try:
            # A cancel_request() that came between the check above and the
            # token's creation: honoured here.
            if self.cancel_request_flag:
                token.cancel()
            client = self._client if self._client is not None else shared_client()
            log.debug("requesting semaphore %s", semaphore_name)
            permit = client.acquire(semaphore_name, timeout=timeout, cancel=token)
        except errors.Timeout as error:
            log.error("attempt to acquire semaphore %s timed out: %s", semaphore_name, error)
            return False
        except errors.Cancelled:
            log.debug("semaphore request for %s cancelled", semaphore_name)
            return False
        except errors.NetsemError as error:
            log.error("unable to acquire network semaphore %s: %s", semaphore_name, error)
            return False
        finally:
            done.set()
            self._token = None
            if watcher is not None:
                watcher.join()
        self.permit = permit
        self.semaphore_acquired = True
        self.semaphore_name = semaphore_name
        if permit.is_local:
            log.warning("fallback semaphore %s acquired (no server reachable)", semaphore_name)
            self.fallback_semaphore = permit
        else:
            log.debug("semaphore %s locked (fence %s)", semaphore_name, permit.fence)
        permit.on_lost(lambda reason: log.warning("semaphore %s lost: %s", semaphore_name, reason))
        self.start_failsafe_monitor()
        return True

    def _watch_cancel(self, token: CancelToken, done: threading.Event) -> None:
        # Asks the callback until the acquire ends; a callback that raises is
        # logged and counts as "do not cancel", like one answering False.
        while not done.wait(CANCEL_POLL_INTERVAL):
            try:
                if self.request_is_cancelled:
                    token.cancel()
                    return
            except Exception:
                log.exception("cancel_request_callback failed")

    def cancel_request(self) -> None:
        """Gives up a pending acquire (from any thread): it returns False.
        An acquire made after this returns False at once, as in ACE."""
        self.cancel_request_flag = True
        token = self._token
        if token is not None:
            token.cancel()

    def failsafe_loop(self) -> None:
        """The monitor thread's body: logs how long the permit has been held
        every 3 s until release. The Client's pings keep it alive."""
        event = self.release_event
        if event is None:
            return
        acquired_at = time.monotonic()
        while not event.wait(FAILSAFE_INTERVAL):
            log.debug("semaphore %s lock time %.1f s", self.semaphore_name, time.monotonic() - acquired_at)
        log.debug("detected release of semaphore %s", self.semaphore_name)

    def start_failsafe_monitor(self) -> None:
        """Starts failsafe_loop on a daemon thread (acquire does this)."""
        self.release_event = threading.Event()
        self.failsafe_thread = threading.Thread(
            target=self.failsafe_loop, name=f"Failsafe {self.semaphore_name}", daemon=True
        )
        self.failsafe_thread.start()

    def release(self) -> None:
        """Gives the permit back; a warning when none is held. Never raises."""
        if not self.semaphore_acquired or self.permit is None:
            log.warning("release called on unacquired semaphore %s", self.semaphore_name)
            return
        permit = self.permit
        try:
            permit.release()
            log.debug("released semaphore %s", self.semaphore_name)
        except errors.NetsemError as error:
            log.error("error trying to release semaphore %s: %s", self.semaphore_name, error)
        finally:
            self.permit = None
            self.fallback_semaphore = None
            self.semaphore_acquired = False
            if self.release_event is not None:
                self.release_event.set()
            if self.failsafe_thread is not None and self.failsafe_thread is not threading.current_thread():
                self.failsafe_thread.join()


class NetworkSemaphore:
    """``with NetworkSemaphore(name):`` holds one permit of ``name`` for the block.

    Raises RuntimeError ("failed to acquire network semaphore: <name>") when
    it cannot be acquired, as ACE's does; acquires nothing while
    set_semaphores_enabled(False).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.semaphore = NetworkSemaphoreClient()

    def __enter__(self) -> NetworkSemaphore:
        if not semaphores_enabled():
            return self
        if not self.semaphore.acquire(self.name):
            raise RuntimeError(f"failed to acquire network semaphore: {self.name}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.semaphore.semaphore_acquired:
            self.semaphore.release()
