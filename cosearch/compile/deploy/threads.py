"""TVM's CPU thread pool: sized once, set per model, recorded in the artifact.

Three facts of TVM 0.27's runtime (``src/runtime/thread_pool.cc``, ``threading_backend.cc``)
decide how fast a small network runs, measured in ``bench/results/runtime_overhead.json``:

- **The pool's size is fixed when it starts**, from ``TVM_NUM_THREADS``; unset, on x86 it takes
  half the logical CPUs ("ignore hyper-threading"): one thread on a 2-core machine.
  ``runtime.config_threadpool`` can later lower the count, never raise it. So a process that
  asked for 2 threads ran kernels tuned on 2 threads with 1 -- the "end-to-end is twice the
  kernel sum" of the search's networks. ``cosearch`` sets ``TVM_NUM_THREADS`` (if the user has
  not) to the CPUs this process may use, at import, before any pool exists
  (``size_pool_env``).
- **Unset, every parallel kernel call re-reads the CPU count** (``MaxConcurrency`` falls through
  to ``std::thread::hardware_concurrency``, glibc's ``get_nprocs``: 6.2 us per call measured;
  0.67 ms of the NB201 bench net's 103 calls). ``apply`` passes a CPU list, which caches the count.
- **Workers are pinned one per core by default.** On a quiet machine that is about as fast as
  free workers; when another process holds a core, a pinned worker waits for its time slice on
  every kernel: the NB201 bench net ran 105x slower, mbv2-small 7.4x. ``"shared"`` lets the
  workers run on any of the cores given.

``RuntimeSettings`` (threads, affinity) is what a compiled model runs with; the end-to-end
measurement chooses the thread count (``measure.measure``), the artifact records it
(``meta.json`` ``runtime``) and ``cosearch run`` applies it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from cosearch.errors import CosearchError

#: ``runtime.config_threadpool`` affinity modes (tvm/src/runtime/threading_backend.h)
AFFINITY_MODES = {"pinned": 1, "shared": -3}
#: the default: with one core busy, pinned 2-thread pools slowed 1.4-105x, shared ones 1.4-2.1x
#: (ORT at 2 threads 1.5-2.6x); quiet, shared and pinned within 2 % on 4 of 5 nets
#: (bench/results/runtime_overhead.json)
DEFAULT_AFFINITY = "shared"


def _cpus_now() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


#: the CPUs this process may use, read once at import: TVM's pool narrows the *calling* thread's
#: affinity when it is configured with fewer CPUs (and threads and processes started from it
#: inherit that), so the live value is not the process's
_CPUS = _cpus_now()


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (as when cosearch was imported)."""
    return list(_CPUS)


def size_pool_env() -> None:
    """Size TVM's pool to every usable CPU when it starts (unless ``TVM_NUM_THREADS`` is set).
    Must run before any TVM call in the process; ``cosearch/__init__`` calls it."""
    os.environ.setdefault("TVM_NUM_THREADS", str(len(usable_cpus())))


@dataclass(frozen=True)
class RuntimeSettings:
    """How a compiled model's kernels are run: ``threads`` pool threads, ``affinity``."""

    threads: int
    affinity: str = DEFAULT_AFFINITY

    def __post_init__(self) -> None:
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise CosearchError(f"runtime threads must be a positive integer, got {self.threads!r}")
        if self.affinity not in AFFINITY_MODES:
            raise CosearchError(f"runtime affinity must be one of {', '.join(AFFINITY_MODES)}, got {self.affinity!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "affinity": self.affinity}

    @classmethod
    def from_dict(cls, d: Any) -> "RuntimeSettings":
        if not isinstance(d, dict) or "threads" not in d:
            raise CosearchError(f"runtime settings must be an object with 'threads', got {d!r}")
        return cls(d["threads"], d.get("affinity", DEFAULT_AFFINITY))


def apply(settings: RuntimeSettings, get_func: Callable[[str], Any] | None = None) -> int:
    """Configure the pool (this process's, or a remote's through ``get_func``) and return the
    thread count in effect: lower than asked when the pool started smaller (see the module
    docstring); the caller records what ran, not what was asked.

    Locally the pool is given every usable CPU with ``settings.threads`` of them in use: the
    list caches the CPU count, and the calling thread keeps every CPU (given one, TVM pins the
    caller to it, and a compile thread or a measuring process started later would inherit a
    single core). An RPC remote takes no list (TVM's RPC cannot pass one): its pool is set
    pinned, as TVM does by default."""
    remote = get_func is not None
    if get_func is None:
        import tvm

        get_func = tvm.get_global_func
    get_func("runtime.NumThreads")()  # start the pool at full size before a count can shrink it
    if remote:
        get_func("runtime.config_threadpool")(AFFINITY_MODES["pinned"], settings.threads)
    else:
        get_func("runtime.config_threadpool")(AFFINITY_MODES[settings.affinity], settings.threads,
                                              [str(i) for i in _CPUS])
    return min(settings.threads, int(get_func("runtime.NumThreads")()))


def candidates(cores: int) -> list[int]:
    """Thread counts worth timing end to end on ``cores`` cores: 1, half, all."""
    cores = max(1, int(cores))
    return sorted({1, max(1, cores // 2), cores})


__all__ = ["AFFINITY_MODES", "DEFAULT_AFFINITY", "RuntimeSettings", "apply", "candidates", "size_pool_env",
           "usable_cpus"]
