"""End-to-end latency of a compiled model with the plain TVM runtime.

``measure(executable, target, inputs=...)`` runs the Relax VM's ``main`` on a
seeded random input, locally or on an RPC device (``target.measure`` decides),
and returns a ``MeasureResult``: either a ``Latency`` (statistics over ``n``
individual repeat timings, taken after warm-up) or an error string. A failed
measurement is data -- the search loop records it and moves on; the CLI calls
``result.unwrap()`` to turn it into a one-line ``CosearchError``.

Threads (``cosearch.compile.deploy.threads``): when the target names a thread
count, the runtime pool is set to it (locally or on the remote); otherwise
(``threads: null``) a local measurement times the model end to end at 1, half
and all of the target's cores, interleaved, and keeps the fastest: the count a
deployed model runs with, recorded in ``Latency.threads`` with every count's
median (``by_threads``). The count recorded is the one in effect, never merely
the one asked for.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cosearch.compile.deploy.threads import DEFAULT_AFFINITY, RuntimeSettings, candidates
from cosearch.compile.deploy.threads import apply as apply_threads
from cosearch.errors import CosearchError

InputSpec = tuple[str, Sequence[int], str]  # (name, shape, dtype)


@dataclass(frozen=True)
class MeasureConfig:
    """How to time one model. ``repeat`` individual timings are kept; each
    is the mean of as many back-to-back runs as needed to last at least
    ``min_repeat_ms`` (so microsecond-scale models are not pure timer noise)."""

    repeat: int = 30
    warmup: int = 3
    min_repeat_ms: float = 1.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        if not isinstance(self.repeat, int) or self.repeat < 1:
            raise CosearchError(f"measure repeat must be a positive integer, got {self.repeat!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise CosearchError(f"measure warmup must be an integer >= 0, got {self.warmup!r}")
        if not (self.min_repeat_ms >= 0):
            raise CosearchError(f"measure min_repeat_ms must be >= 0, got {self.min_repeat_ms!r}")


#: A cheaper measurement for the co-search loop (hundreds of architectures): 10
#: timings after one warm-up instead of 30 after three. Noise (bench/results/
#: loop_cost.json, 4 NB201 nets, loaded 2-core machine): its median was 0.84-1.30x
#: (median 0.93x) the 30-timing median taken right after, and the p10-p90 spread of
#: its samples 9-30 % of the median -- under such load, architectures closer than
#: ~30 % in latency are not ranked reliably by either setting. Final
#: (reported/exported) latencies keep ``MeasureConfig()``.
SEARCH_MEASURE = MeasureConfig(repeat=10, warmup=1, min_repeat_ms=1.0)


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p10_ms: float
    p90_ms: float
    n: int
    threads: int | None
    affinity: str | None = None
    by_threads: dict[int, float] | None = None  # median ms per thread count timed, when chosen

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], threads: int | None, affinity: str | None = None,
                     by_threads: dict[int, float] | None = None) -> "Latency":
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no latency samples")
        p10, med, p90 = np.percentile(a, [10, 50, 90])
        return cls(float(med), float(p10), float(p90), int(a.size), threads, affinity, by_threads)

    def to_dict(self) -> dict[str, Any]:
        """The ``latency_ms`` block of ``meta.json``."""
        d: dict[str, Any] = {"median": self.median_ms, "p10": self.p10_ms, "p90": self.p90_ms, "n": self.n,
                             "threads": self.threads, "affinity": self.affinity}
        if self.by_threads:
            d["by_threads"] = {str(t): ms for t, ms in sorted(self.by_threads.items())}
        return d

    def runtime(self) -> "RuntimeSettings | None":
        """The settings the model was measured with (what ``cosearch run`` applies)."""
        if self.threads is None:
            return None
        return RuntimeSettings(int(self.threads), self.affinity or DEFAULT_AFFINITY)

    def __str__(self) -> str:
        return (
            f"median {self.median_ms:.4f} ms (p10 {self.p10_ms:.4f}, p90 {self.p90_ms:.4f}, "
            f"n={self.n}, threads={self.threads if self.threads is not None else 'default'})"
        )


@dataclass(frozen=True)
class MeasureResult:
    latency: Latency | None
    error: str | None = None
    where: str = "local"  # "local" or "rpc:<host>:<port>/<key>"
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.latency is not None

    def unwrap(self) -> Latency:
        if self.latency is None:
            raise CosearchError(f"measurement ({self.where}) failed: {self.error}")
        return self.latency


def random_inputs(inputs: Sequence[InputSpec], seed: int | None = 0) -> list[np.ndarray]:
    """Seeded random arrays for ``(name, shape, dtype)`` specs (floats ~ N(0,1))."""
    rng = np.random.default_rng(seed)
    out = []
    for name, shape, dtype in inputs:
        shape = tuple(int(d) for d in shape)
        if any(d <= 0 for d in shape):
            raise CosearchError(f"input {name!r} has a non-static shape {shape}; only static shapes are measured")
        dt = np.dtype(dtype)
        if dt.kind == "f":
            out.append(rng.standard_normal(shape).astype(dt))
        elif dt.kind in "iu":
            out.append(rng.integers(0, 10, size=shape).astype(dt))
        elif dt.kind == "b":
            out.append(rng.integers(0, 2, size=shape).astype(dt))
        else:
            raise CosearchError(f"input {name!r} has dtype {dtype!r}; accepted: float, int, uint, bool")
    return out


def _time_vm(vm, dev, arrays: list[np.ndarray], cfg: MeasureConfig) -> list[float]:
    """Warm up, then ``cfg.repeat`` timings in ms via the VM's time_evaluator."""
    import tvm

    args = [tvm.runtime.tensor(a, dev) for a in arrays]
    vm.set_input("main", *args)
    for _ in range(cfg.warmup):
        vm.invoke_stateful("main")
    dev.sync()
    # number=1 + min_repeat_ms: TVM grows `number` until one repeat lasts min_repeat_ms.
    fn = vm.time_evaluator(
        "invoke_stateful", dev, number=1, repeat=cfg.repeat, min_repeat_ms=int(round(cfg.min_repeat_ms))
    )
    res = fn("main")
    return [float(s) * 1e3 for s in res.results]


def _config_threads(get_func, threads: int | None, affinity: str = DEFAULT_AFFINITY) -> int | None:
    """Set the runtime pool (this process's when ``get_func`` is ``None``, else a remote's) to
    ``threads`` if given; return the count in effect."""
    if threads is not None:
        return apply_threads(RuntimeSettings(int(threads), affinity), get_func)
    try:
        import tvm

        return int((get_func or tvm.get_global_func)("runtime.NumThreads")())
    except Exception:  # noqa: BLE001 - an old remote runtime may lack it; not essential
        return None


def measure_local(executable, inputs: Sequence[InputSpec], *, threads: int | None = None,
                  config: MeasureConfig = MeasureConfig(), arrays: Sequence[np.ndarray] | None = None,
                  affinity: str = DEFAULT_AFFINITY) -> MeasureResult:
    """Time ``executable`` (a ``tvm.compile`` result or a loaded runtime module) on
    this machine's CPU, on ``arrays`` if given, else on seeded random inputs."""
    t0 = time.perf_counter()
    try:
        import tvm
        from tvm import relax

        arrays = list(arrays) if arrays is not None else random_inputs(inputs, config.seed)
        used = _config_threads(None, threads, affinity)
        dev = tvm.cpu()
        vm = relax.VirtualMachine(executable, dev)
        samples = _time_vm(vm, dev, arrays, config)
        return MeasureResult(Latency.from_samples(samples, used, affinity if threads is not None else None),
                             None, "local", time.perf_counter() - t0)
    except CosearchError:
        raise
    except Exception as e:  # noqa: BLE001 - failures are data for the search loop
        return MeasureResult(None, _one_line(e), "local", time.perf_counter() - t0)


def measure_interleaved(executable, inputs: Sequence[InputSpec], *, threads: Sequence[int] = (1, 2), rounds: int = 3,
                        config: MeasureConfig = MeasureConfig(repeat=10, warmup=1),
                        affinity: str = DEFAULT_AFFINITY) -> dict[int, Latency]:
    """Time ``executable`` locally at each thread count in ``threads``, interleaved: ``rounds``
    rounds, each timing every thread count ``config.repeat`` times in turn, so a load that
    comes and goes hits every count alike. Returns per thread count the statistics over all
    its samples; raises ``CosearchError`` with one line when the model does not run."""
    import tvm
    from tvm import relax

    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise CosearchError(f"rounds must be a positive integer, got {rounds!r}")
    arrays = random_inputs(inputs, config.seed)
    dev = tvm.cpu()
    samples: dict[int, list[float]] = {int(t): [] for t in threads}
    used: dict[int, int | None] = {}
    try:
        vm = relax.VirtualMachine(executable, dev)
        for _ in range(rounds):
            for t in samples:
                used[t] = _config_threads(None, t, affinity)
                samples[t].extend(_time_vm(vm, dev, arrays, config))
    except Exception as e:  # noqa: BLE001
        raise CosearchError(f"measurement failed: {_one_line(e)}") from None
    return {t: Latency.from_samples(v, used[t], affinity) for t, v in samples.items()}


def measure_best_threads(executable, inputs: Sequence[InputSpec], *, counts: Sequence[int],
                         config: MeasureConfig = MeasureConfig(), affinity: str = DEFAULT_AFFINITY) -> MeasureResult:
    """Time ``executable`` at every thread count of ``counts``, interleaved (3, 2 or 1 rounds,
    whichever divides ``config.repeat``, so each count gets ``config.repeat`` timings), and
    return the fastest count's latency with every count's median in ``by_threads``. A count
    the pool could not give (it ran as a smaller one) is reported under the count that ran."""
    t0 = time.perf_counter()
    rounds = next(r for r in (3, 2, 1) if config.repeat % r == 0)
    per = MeasureConfig(repeat=config.repeat // rounds, warmup=config.warmup,
                        min_repeat_ms=config.min_repeat_ms, seed=config.seed)
    try:
        lats = measure_interleaved(executable, inputs, threads=sorted(set(int(c) for c in counts)), rounds=rounds,
                                   config=per, affinity=affinity)
    except CosearchError as e:
        return MeasureResult(None, str(e), "local", time.perf_counter() - t0)
    ran = {}
    for t, lat in lats.items():  # a count the pool could not give ran as a smaller one: keep what ran
        if lat.threads == t or lat.threads not in ran:
            ran[lat.threads if lat.threads is not None else t] = lat
    best = min(ran.values(), key=lambda lat: lat.median_ms)
    by = {t: lat.median_ms for t, lat in ran.items()}
    out = Latency(best.median_ms, best.p10_ms, best.p90_ms, best.n, best.threads, affinity, by)
    return MeasureResult(out, None, "local", time.perf_counter() - t0)


def measure_rpc(executable, inputs: Sequence[InputSpec], settings, *, threads: int | None = None,
                export: str = "so", cc: str | None = None,
                config: MeasureConfig = MeasureConfig(), library_path: str | os.PathLike | None = None) -> MeasureResult:
    """Export (or reuse ``library_path``), upload to a device from the tracker in
    ``settings`` (``RPCSettings``), load it there and time it remotely.

    An unreachable tracker raises ``CosearchError`` (a configuration problem);
    anything that goes wrong after a session was obtained is returned as data.
    """
    from cosearch.compile.deploy import rpc as _rpc

    where = f"rpc:{settings.tracker_host}:{settings.tracker_port}/{settings.key}"
    t0 = time.perf_counter()
    remote = _rpc.request_session(settings)  # CosearchError when unreachable / no such key
    try:
        from tvm import relax

        arrays = random_inputs(inputs, config.seed)
        with tempfile.TemporaryDirectory(prefix="cosearch-rpc-") as tmp:
            if library_path is None:
                library_path = export_library(executable, Path(tmp), export=export, cc=cc)
            library_path = Path(library_path)
            remote.upload(str(library_path))
            rlib = remote.load_module(library_path.name)
        used = _config_threads(remote.get_function, threads)
        dev = remote.cpu()
        vm = relax.VirtualMachine(rlib, dev)
        samples = _time_vm(vm, dev, arrays, config)
        aff = "pinned" if threads is not None else None  # threads.apply: remotes are set pinned
        return MeasureResult(Latency.from_samples(samples, used, aff), None, where, time.perf_counter() - t0)
    except CosearchError:
        raise
    except Exception as e:  # noqa: BLE001
        return MeasureResult(None, _one_line(e), where, time.perf_counter() - t0)
    finally:
        del remote


def export_library(executable, out_dir: Path, *, export: str = "so", cc: str | None = None,
                   stem: str = "model") -> Path:
    """``executable.export_library`` as ``<stem>.so`` (with ``cc`` as the
    compiler when given, e.g. a cross g++) or ``<stem>.tar`` (objects only)."""
    if export not in ("so", "tar"):
        raise CosearchError(f"export must be 'so' or 'tar', got {export!r}")
    path = Path(out_dir) / f"{stem}.{export}"
    if export == "so" and cc:
        from tvm.support import cc as _cc

        executable.export_library(str(path), fcompile=_cc.cross_compiler(cc))
    else:
        executable.export_library(str(path))
    return path


def resolved_threads(target) -> int | None:
    """The thread count a target is measured with: ``threads`` if set, else
    the target's ``num-cores`` (TVM's own default may be lower, e.g. 1 here)."""
    threads = target.threads
    if threads is None:
        cores = target.target.get("num-cores")
        threads = int(cores) if isinstance(cores, int) and cores > 0 else None
    return threads


def measure(executable, target, inputs: Sequence[InputSpec], *, config: MeasureConfig = MeasureConfig(),
            library_path: str | os.PathLike | None = None) -> MeasureResult:
    """Measure according to ``target.measure`` ("local" | "rpc"); a "none"
    (compile-only) target raises ``CosearchError``: check ``target.measure`` first."""
    kind = target.measure
    threads = resolved_threads(target)
    if kind == "local":
        if target.threads is None and threads is not None:
            return measure_best_threads(executable, inputs, counts=candidates(threads), config=config)
        return measure_local(executable, inputs, threads=threads, config=config)
    if kind == "rpc":
        if target.rpc is None:
            raise CosearchError(f"target {target.name!r} measures via rpc but has no 'rpc' settings")
        return measure_rpc(executable, inputs, target.rpc, threads=threads, export=target.export,
                           cc=target.cc, config=config, library_path=library_path)
    raise CosearchError(
        f"target {target.name!r} is compile-only (measure={kind!r}); "
        "accepted for measurement: 'local', 'rpc'"
    )


def _one_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # TVM errors put the useful line last after a C++ backtrace; keep first + last.
    if len(lines) > 2:
        return f"{lines[0]} ... {lines[-1]}"[:500]
    return " ".join(lines)[:500] or traceback.format_exception_only(type(e), e)[-1].strip()


__all__ = [
    "Latency", "MeasureConfig", "MeasureResult", "SEARCH_MEASURE", "measure", "measure_local", "measure_rpc",
    "random_inputs", "export_library", "measure_interleaved", "measure_best_threads", "resolved_threads",
]
