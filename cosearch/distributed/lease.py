"""The measurement lease of the local CPU: no other work of the search runs on this machine's
cores while the search times something on them.

Two TVM runtimes on one host share the cores through thread affinity (apache/tvm#4145), and a
compile running on the cores being measured slows the kernels it times: concurrent work corrupts
latencies. So the work of a search is of two kinds:

- **work** (a worker's architecture planning, estimator scoring, compiling) holds the lease
  *shared*: any number at once;
- **measuring** (the driver's tuning calls, whose runner times candidates, and end-to-end
  measurements) holds it *exclusive*: it waits until the work running now has finished, and no
  work starts until it is done.

It is an ``fcntl.flock`` readers-writer lock on one file that every process of the search on
this machine opens (``<run dir>/lease/local.lock``), with a second lock as a turnstile so that a
waiting measurement is not starved by a stream of work (work passes the turnstile before taking
its shared hold; a measurement holds the turnstile while it waits). Processes on other machines
(a Ray cluster's other nodes) do not share this machine's cores and take no lease.

Every hold is logged when it ends, one JSON line in ``<run dir>/lease/holds.jsonl``:
``{"v": 1, "mode": "shared"|"exclusive", "what": ..., "pid", "host", "t0", "t1"}`` (``time.time()``
at acquisition and release), so that "no compile overlapped a measurement" is checked from the
record (``overlaps``), not assumed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from cosearch import jsonl

VERSION = 1


@dataclass(frozen=True)
class DeviceLease:
    """The lease of this machine's CPU for one search (``dir``: ``<run dir>/lease``)."""

    dir: str
    host: str = ""  # the machine the lease belongs to (default: this one)

    @classmethod
    def for_run(cls, run_dir: str | os.PathLike) -> "DeviceLease":
        d = Path(run_dir) / "lease"
        d.mkdir(parents=True, exist_ok=True)
        return cls(str(d), socket.gethostname())

    @property
    def here(self) -> bool:
        """Does this process run on the leased machine (and see its lock file)?"""
        return (not self.host or self.host == socket.gethostname()) and Path(self.dir).is_dir()

    def work(self, what: str = "work"):
        """Hold the lease shared (work that may run beside other work, never beside a measurement)."""
        return self._lease("shared", what)

    def measuring(self, what: str = "measure"):
        """Hold the lease exclusive (a measurement: nothing else of the search runs on the cores)."""
        return self._lease("exclusive", what)

    @contextlib.contextmanager
    def _lease(self, mode: str, what: str) -> Iterator[None]:
        if not self.here:
            yield
            return
        d = Path(self.dir)
        turnstile = jsonl.locked(d / "turnstile.lock", exclusive=True)
        if mode == "shared":  # pass the turnstile (a waiting measurement holds it), then hold shared
            with turnstile:
                pass
            with self._hold(mode, what, d):
                yield
        else:  # hold the turnstile while waiting, so no new work starts meanwhile
            with turnstile, self._hold(mode, what, d):
                yield

    @contextlib.contextmanager
    def _hold(self, mode: str, what: str, d: Path) -> Iterator[None]:
        with jsonl.locked(d / "local.lock", exclusive=mode == "exclusive"):
            t0 = time.time()
            try:
                yield
            finally:
                t1 = time.time()
                jsonl.append(d / "holds.jsonl", [{"v": VERSION, "mode": mode, "what": what, "pid": os.getpid(),
                                                  "host": socket.gethostname(), "t0": t0, "t1": t1}])


def read_holds(lease_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The logged holds of a lease, in the order they ended."""
    return [h for h in jsonl.read(Path(lease_dir) / "holds.jsonl") if "mode" in h and "t0" in h and "t1" in h]


def overlaps(holds: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs of holds on one host that overlapped in time where one of them was exclusive
    (what the lease exists to prevent; empty when it held)."""
    out = []
    ex = [h for h in holds if h["mode"] == "exclusive"]
    for e in ex:
        for h in holds:
            if h is e or h.get("host") != e.get("host"):
                continue
            if h["t0"] < e["t1"] and e["t0"] < h["t1"]:
                out.append((e, h))
    return out


__all__ = ["DeviceLease", "overlaps", "read_holds"]
