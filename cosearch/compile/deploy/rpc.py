"""RPC plumbing with bounded waits.

- ``connect(settings)`` -> a ``TrackerSession``; fails within
  ``settings.connect_timeout_s`` with a one-line ``CosearchError`` when the
  tracker is unreachable or is not a TVM tracker (the stock client retries a
  refused connection for 60 s and blocks forever on a silent peer).
- ``request_session(settings)`` -> an ``RPCSession`` on a device registered
  under ``settings.key``; errors name the keys the tracker does know.
- ``LocalRPC(key=..., port=0)`` -> context manager running a REAL tracker and
  a REAL server on loopback (TVM's own ``rpc.Tracker`` / ``rpc.Server``, each
  in its own process), yielding ``RPCSettings`` once the server is registered.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import TYPE_CHECKING

from cosearch.errors import CosearchError

if TYPE_CHECKING:
    from cosearch.compile.target import RPCSettings

_TRACKER_MAGIC = 0x2F271  # tvm.rpc.base.RPC_TRACKER_MAGIC (checked in tests)


def probe_tracker(host: str, port: int, timeout_s: float) -> None:
    """Open a TCP connection and do the tracker handshake, retrying a refused
    connection until ``timeout_s`` has passed. Raises ``CosearchError``."""
    deadline = time.monotonic() + timeout_s
    last: str = "no attempt"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.create_connection((host, port), timeout=min(left, 5.0)) as s:
                s.settimeout(max(0.1, min(left, 5.0)))
                s.sendall(struct.pack("<i", _TRACKER_MAGIC))
                data = b""
                while len(data) < 4:
                    chunk = s.recv(4 - len(data))
                    if not chunk:
                        raise ConnectionError("peer closed the connection during the tracker handshake")
                    data += chunk
                if struct.unpack("<i", data)[0] != _TRACKER_MAGIC:
                    raise CosearchError(f"{host}:{port} answers but is not a TVM RPC tracker")
                return
        except CosearchError:
            raise
        except socket.gaierror as e:
            raise CosearchError(f"RPC tracker host {host!r} cannot be resolved: {e}") from None
        except OSError as e:
            last = e.strerror or str(e) or type(e).__name__
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    raise CosearchError(
        f"RPC tracker {host}:{port} unreachable after {timeout_s:g} s ({last}); start one with "
        f"'python -m tvm.exec.rpc_tracker --host {host} --port {port}' or fix the target's rpc settings"
    )


def connect(settings: "RPCSettings"):
    """A ``tvm.rpc.TrackerSession``, or ``CosearchError`` within ``connect_timeout_s``."""
    probe_tracker(settings.tracker_host, settings.tracker_port, settings.connect_timeout_s)
    from tvm import rpc

    try:
        return rpc.connect_tracker(settings.tracker_host, settings.tracker_port)
    except (OSError, RuntimeError) as e:  # tracker went away between probe and connect
        raise CosearchError(
            f"RPC tracker {settings.tracker_host}:{settings.tracker_port} refused the session: {e}"
        ) from None


def registered_keys(tracker) -> list[str]:
    """Device keys with at least one server registered at ``tracker``."""
    info = tracker.summary().get("server_info", [])
    return sorted({item["key"].split(":", 1)[-1] for item in info if item.get("key", "").startswith("server:")})


def boards(settings: "RPCSettings") -> int:
    """How many servers (boards) are registered under ``settings.key`` at the tracker: what one
    tuning call can measure on at once (the tracker hands each session a free board, never a
    busy one). 0 when none is."""
    tracker = connect(settings)
    try:
        info = tracker.summary().get("server_info", [])
    finally:
        tracker.close()
    return sum(1 for item in info if item.get("key", "") == f"server:{settings.key}")


def check_key(settings: "RPCSettings") -> None:
    """Bounded check that the tracker is reachable and knows ``settings.key``."""
    tracker = connect(settings)
    try:
        keys = registered_keys(tracker)
    finally:
        tracker.close()
    if settings.key not in keys:
        raise CosearchError(
            f"no RPC server registered under key {settings.key!r} at tracker "
            f"{settings.tracker_host}:{settings.tracker_port}; registered keys: {', '.join(keys) or '(none)'}"
        )


def request_session(settings: "RPCSettings", *, wait_s: float | None = None):
    """An ``RPCSession`` on a device with ``settings.key``. Waits at most
    ``wait_s`` (default ``settings.session_timeout_s``) for a busy device."""
    tracker = connect(settings)
    keys = registered_keys(tracker)
    if settings.key not in keys:
        tracker.close()
        raise CosearchError(
            f"no RPC server registered under key {settings.key!r} at tracker "
            f"{settings.tracker_host}:{settings.tracker_port}; registered keys: {', '.join(keys) or '(none)'}"
        )
    wait = settings.session_timeout_s if wait_s is None else wait_s
    try:
        # bound the tracker's answer: the stock request() waits forever for a free device
        tracker._sock.settimeout(wait)  # noqa: SLF001 - no public knob for this
        return tracker.request(settings.key, session_timeout=settings.session_timeout_s, max_retry=1)
    except (OSError, RuntimeError) as e:
        raise CosearchError(
            f"no free RPC device with key {settings.key!r} from tracker "
            f"{settings.tracker_host}:{settings.tracker_port} within {wait:g} s: {e}"
        ) from None
    finally:
        tracker.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _check_bindable(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise CosearchError(
                f"cannot start an RPC tracker on {host}:{port}: {e.strerror or e}; pick a free port or port=0"
            ) from None


class LocalRPC:
    """A real TVM tracker + server on loopback, for tests and ``rpc-loopback``.

    >>> with LocalRPC(key="cosearch-loopback", port=0) as settings:
    ...     remote = request_session(settings)

    ``port=0`` picks a free port (the tracker takes the first free one in a
    small range above it, so parallel test runs don't collide); a fixed
    ``port`` must be free or ``CosearchError`` is raised. ``start_timeout_s``
    bounds start-up including server registration (measured ~6-10 s).
    """

    def __init__(self, *, key: str = "cosearch-loopback", port: int = 0, host: str = "127.0.0.1",
                 session_timeout_s: float = 60.0, connect_timeout_s: float = 10.0,
                 start_timeout_s: float = 120.0, servers: int = 1) -> None:
        if not key or any(c.isspace() for c in key) or ":" in key:
            raise CosearchError(f"RPC key must be non-empty without spaces or ':', got {key!r}")
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise CosearchError(f"port must be 0 (pick a free one) or 1..65535, got {port!r}")
        if isinstance(servers, bool) or not isinstance(servers, int) or servers < 1:
            raise CosearchError(f"servers must be a positive integer, got {servers!r}")
        self.servers = servers
        self._more: list = []  # servers beyond the first
        self.key, self.port, self.host = key, port, host
        self.session_timeout_s, self.connect_timeout_s = session_timeout_s, connect_timeout_s
        self.start_timeout_s = start_timeout_s
        self._tracker = None
        self._server = None
        self.settings: "RPCSettings | None" = None
        self.startup_seconds: float | None = None

    def __enter__(self) -> "RPCSettings":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "RPCSettings":
        from tvm.rpc.server import Server
        from tvm.rpc.tracker import Tracker

        from cosearch.compile.target import RPCSettings

        t0 = time.monotonic()
        if self.port:
            _check_bindable(self.host, self.port)  # fail clearly before spawning a tracker process
        base = self.port or free_port(self.host)
        end = base + 1 if self.port else min(base + 64, 65536)
        try:
            self._tracker = Tracker(self.host, port=base, port_end=end, silent=True)
        except Exception as e:  # noqa: BLE001 - PopenWorker re-raises the child's error
            raise CosearchError(f"cannot start an RPC tracker on {self.host}:{base}: {e}") from None
        tport = self._tracker.port
        started = []
        for _ in range(self.servers):  # one process per board, each registered under the key
            sbase = free_port(self.host)
            try:
                started.append(Server(self.host, port=sbase, port_end=min(sbase + 64, 65536),
                                      tracker_addr=(self.host, tport), key=self.key, silent=True))
            except Exception as e:  # noqa: BLE001
                self._more = started
                raise CosearchError(f"cannot start an RPC server on {self.host}: {e}") from None
        self._server, self._more = started[0], started[1:]
        settings = RPCSettings(tracker_host=self.host, tracker_port=tport, key=self.key,
                               session_timeout_s=self.session_timeout_s, connect_timeout_s=self.connect_timeout_s)
        while boards(settings) < self.servers:
            if time.monotonic() - t0 > self.start_timeout_s:
                raise CosearchError(
                    f"RPC server with key {self.key!r} did not register at {self.host}:{tport} "
                    f"within {self.start_timeout_s:g} s"
                )
            time.sleep(0.1)
        self.settings = settings
        self.startup_seconds = time.monotonic() - t0
        return settings

    def stop(self) -> None:
        """Kill the server (and any session process it forked), then the tracker. Idempotent."""
        servers, self._server, self._more = [self._server, *self._more], None, []
        for server in servers:
            if server is None:
                continue
            _kill_children(server)
            try:
                server.terminate()
            except Exception:  # noqa: BLE001 - best effort, already dying
                pass
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            try:
                tracker.terminate()
            except Exception:  # noqa: BLE001 - e.g. the stop handshake failed: kill it
                proc = getattr(tracker, "proc", None)
                if proc is not None:
                    proc.kill()
                tracker.proc = None


def _kill_children(popen_owner) -> None:
    """Terminate processes forked by a PopenWorker-backed server (RPC session workers)."""
    proc = getattr(getattr(popen_owner, "proc", None), "_proc", None)
    if proc is None:
        return
    try:
        import psutil

        children = psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - process already gone
        return
    for c in children:
        try:
            c.terminate()
        except Exception:  # noqa: BLE001
            pass
    psutil.wait_procs(children, timeout=3)
    for c in children:
        try:
            if c.is_running():
                c.kill()
        except Exception:  # noqa: BLE001
            pass


__all__ = ["LocalRPC", "boards", "check_key", "connect", "free_port", "probe_tracker", "registered_keys",
           "request_session"]
