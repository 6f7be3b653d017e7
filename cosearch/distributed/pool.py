"""Where a search's portable work runs: ``WorkPool`` (a small interface) with two kinds,
``inline`` (this process, when the result is asked for: the default) and ``ray`` (Ray
workers, a local instance started for the run or an existing cluster).

The search's driver stays one process that owns the journal, the archive and every decision;
it submits work that depends on nothing but its arguments (``cosearch.distributed.screen``)
and takes the results back *in the order it submitted them*, whatever order they finish in.

Ray's traps, and what is done about them:

- Ray sets ``OMP_NUM_THREADS`` to a task's CPU count (1): a worker's torch runs one thread (the
  work is one architecture per task), and TVM's pool is sized by ``TVM_NUM_THREADS``, set for the
  workers to 1 (they never measure; measurement stays with the driver under the device lease,
  ``distributed.lease``).
- Forking a process that holds TVM's or torch's thread pools deadlocks: Ray starts its workers
  as new processes (never forks of the driver).
- A worker killed mid-task (kill -9, a node lost) fails only its task, which Ray runs again
  (``max_retries``); the driver journals each result once, when it takes it, so nothing is done
  twice in the run's record.
"""

from __future__ import annotations

import abc
import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from cosearch.errors import CosearchError
from cosearch.registry import Registry

#: how often Ray runs a task again after its worker died
MAX_RETRIES = 3
INSTALL_HINT = "pip install 'cosearch[ray]'"


class Pending(abc.ABC):
    """A submitted piece of work."""

    @abc.abstractmethod
    def result(self) -> Any:
        """The work's return value (raises what the work raised)."""


class WorkPool(abc.ABC):
    kind = "abstract"
    workers = 0  # processes that run work beside the driver (0: inline)

    @abc.abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any) -> Pending: ...

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "workers": self.workers}

    def __enter__(self) -> "WorkPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Later(Pending):
    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self.fn, self.args = fn, args

    def result(self) -> Any:
        return self.fn(*self.args)


class InlinePool(WorkPool):
    """Runs each piece of work in this process when its result is asked for (so nothing runs
    that the driver never asks for, and the order of work is the order of asking)."""

    kind = "inline"

    def submit(self, fn: Callable[..., Any], *args: Any) -> Pending:
        return _Later(fn, args)


class _RayPending(Pending):
    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def result(self) -> Any:
        import ray

        return ray.get(self.ref)


def require_ray():
    try:
        import ray
    except ImportError as e:
        raise CosearchError(f"--workers and --ray-address run the search on Ray, which is not installed: "
                            f"{INSTALL_HINT}") from e
    return ray


class RayPool(WorkPool):
    """Work on Ray: ``address=None`` starts a local instance with ``workers`` CPUs for this run
    (stopped at ``close``); an address (``ray start --head`` prints it; ``auto`` finds a local
    one) joins that cluster, which brings its own CPUs. Each task takes one CPU."""

    kind = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        ray = require_ray()
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise CosearchError(f"--workers must be a positive integer, got {workers!r}")
        self.address = address
        self._own = not ray.is_initialized()
        env = {"TVM_NUM_THREADS": "1", "COSEARCH_WORKER": "1"}
        if self._own and address and address != "auto":
            _probe(address)
        if self._own:
            import logging

            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.ERROR, "runtime_env": {"env_vars": env}}
            if address is None:  # a new instance, even where another one (or a stale record of one) exists
                kw["address"] = "local"
                kw["num_cpus"] = int(workers or os.cpu_count() or 1)
            else:
                kw["address"] = address
            try:
                ray.init(**kw)
            except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:
                where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
                auth = ""
                if address and address != "auto" and os.environ.get("RAY_AUTH_MODE") is None:
                    # Ray never sends the local token to an explicitly given address on its own
                    auth = ("; a cluster with token authentication (Ray's default for 'ray start') needs "
                            "RAY_AUTH_MODE=token and its token (~/.ray/auth_token or RAY_AUTH_TOKEN)")
                raise CosearchError(f"cannot start or join {where}: {str(e).splitlines()[0] if str(e) else e}; "
                                    f"accepted: --ray-address HOST:PORT of a running head (ray start --head), "
                                    f"or 'auto'{auth}") from e
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = min(int(workers), cpus) if workers else cpus
        self._remote: dict[Any, Any] = {}

    def submit(self, fn: Callable[..., Any], *args: Any) -> Pending:
        import ray

        rf = self._remote.get(fn)
        if rf is None:
            rf = self._remote[fn] = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(fn)
        return _RayPending(rf.remote(*args))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "workers": self.workers, "address": self.address}

    def close(self) -> None:
        if self._own:
            import ray

            ray.shutdown()
            self._own = False


#: seconds a ``--ray-address`` gets to accept a connection (Ray itself retries for minutes)
CONNECT_TIMEOUT_S = 10.0


def _probe(address: str) -> None:
    """Fail in bounded time when nothing listens at ``address`` (``[ray://]HOST:PORT``)."""
    import socket
    import time

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise CosearchError(f"--ray-address must be HOST:PORT (or ray://HOST:PORT, or auto), got {address!r}")
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2.0):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise CosearchError(f"--ray-address {address!r}: no Ray cluster answers after {CONNECT_TIMEOUT_S:g} s "
                                    f"({e.strerror or e}); start one with 'ray start --head' and give the address "
                                    f"it prints") from None
            time.sleep(0.5)


POOLS: Registry[type[WorkPool]] = Registry("work pool")
POOLS.register("inline", "cosearch.distributed.pool:InlinePool")
POOLS.register("ray", "cosearch.distributed.pool:RayPool")


def make_pool(workers: int | None = None, address: str | None = None) -> WorkPool:
    """``inline`` without ``workers`` or ``address``; Ray otherwise."""
    if workers is None and not address:
        return POOLS.create("inline")
    return POOLS.create("ray", workers=workers, address=address)


@dataclass(frozen=True)
class Parallel:
    """Where a run's portable work goes (``--workers N``, ``--ray-address ADDR``); nothing: inline.
    Not part of the search's config: it changes where work runs, not what the search decides."""

    workers: int | None = None
    address: str | None = None

    def open(self) -> WorkPool:
        return make_pool(self.workers, self.address)


@contextlib.contextmanager
def opened(parallel: "Parallel | WorkPool | None") -> Iterator[WorkPool]:
    """The pool of ``parallel``: opened for the block (and closed after it), or, given an open
    pool, that pool (left open: its opener closes it); ``None``: inline."""
    if isinstance(parallel, WorkPool):
        yield parallel
        return
    with (parallel or Parallel()).open() as work:
        yield work


__all__ = ["INSTALL_HINT", "MAX_RETRIES", "POOLS", "InlinePool", "Parallel", "Pending", "RayPool", "WorkPool",
           "make_pool", "opened", "require_ray"]
