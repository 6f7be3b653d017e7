"""MetaSchedule builders: candidates compiled in the calling process (``InProcessBuilder``),
or on a work pool's workers (``PoolBuilder``).

The stock ``LocalBuilder`` starts a new worker pool on every ``build()`` call and
each worker imports ``tvm.s_tir.tensor_intrin`` (about 20 s, mostly its CUDA part),
so a batch costs seconds before anything is compiled. Compiling one candidate
takes 0.04-0.3 s, so ``InProcessBuilder`` simply does it here, in ``workers``
threads (TVM's FFI releases the GIL while LLVM works: 2 threads built a 64-trial
NB201 tuning's candidates in 11.3 s instead of 17.7 s on 2 cores), and
exports the LLVM object file (``.o``; a ``.tar`` of objects, as the stock builder
does, when the module has imports). The runner, local or over RPC, links it on load.

Failures are data: an exception while building becomes
``BuilderResult(None, error_msg)``; the search goes on. What this builder cannot
do is kill a build that hangs (no timeout) — LLVM builds of MetaSchedule
candidates do not hang in practice.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderInput, BuilderResult, PyBuilder


def build_one(mod, target) -> "object":
    """What the stock ``default_build`` does, minus the ``tensor_intrin`` import."""
    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm.tirx.build(mod, target=target)


def _single_object(rt_mod) -> bool:
    try:
        return rt_mod.kind == "llvm" and len(rt_mod.imports) == 0
    except Exception:  # older/newer runtime Module API: fall back to the tar export
        return False


def _export(rt_mod, d: str) -> str:
    """Write a built candidate into folder ``d`` -> its path: one LLVM object with nothing
    imported as ``.o`` (the runner's ``load_module`` links it directly, which saves a tar + untar
    subprocess per candidate), else a ``.tar`` of objects, as the stock builder does."""
    from tvm.support.tar import tar

    if _single_object(rt_mod):
        path = os.path.join(d, "candidate.o")
        rt_mod.write_to_file(path)
    else:
        path = os.path.join(d, "candidate." + tar.output_format)
        rt_mod.export_library(path, fcompile=tar)
    return path


@derived_object
class InProcessBuilder(PyBuilder):
    """Builds candidates in this process (``workers`` threads) and exports each as an
    LLVM object file, or a ``.tar`` of objects when the module has imports."""

    def __init__(self, *, tmp_root: str | None = None, workers: int = 1) -> None:
        super().__init__()
        self.tmp_root = tmp_root
        self.workers = workers
        self.seconds = 0.0  # wall time spent in build()
        self.built = 0

    def _build_one(self, inp: BuilderInput) -> BuilderResult:
        d = tempfile.mkdtemp(prefix="cosearch-build-", dir=self.tmp_root)
        try:
            return BuilderResult(_export(build_one(inp.mod, inp.target), d), None)
        except Exception as e:  # a bad candidate never ends the search
            shutil.rmtree(d, ignore_errors=True)
            return BuilderResult(None, f"InProcessBuilder: {type(e).__name__}: {e}")

    def build(self, build_inputs: list[BuilderInput]) -> list[BuilderResult]:
        import time

        t0 = time.perf_counter()
        if self.workers <= 1 or len(build_inputs) <= 1:
            out = [self._build_one(inp) for inp in build_inputs]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                out = list(pool.map(self._build_one, build_inputs))
        self.seconds += time.perf_counter() - t0
        self.built += len(build_inputs)
        return out



def build_artifact(mod_json: str, target_str: str) -> tuple[bytes | None, str, str | None, int]:
    """Build one serialised candidate (in a worker process, or anywhere): ``(file bytes, suffix,
    None, pid)``, or ``(None, "", error, pid)``. What ``InProcessBuilder`` writes, sent back as
    bytes so a worker on another node needs no shared filesystem."""
    import tvm

    d = tempfile.mkdtemp(prefix="cosearch-build-")
    try:
        path = _export(build_one(tvm.ir.load_json(mod_json), tvm.target.Target(target_str)), d)
        with open(path, "rb") as f:
            return f.read(), os.path.splitext(path)[1], None, os.getpid()
    except Exception as e:  # noqa: BLE001 - a bad candidate never ends the search
        return None, "", f"{type(e).__name__}: {e}", os.getpid()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@derived_object
class PoolBuilder(PyBuilder):
    """Builds candidates on a work pool's workers (``cosearch.distributed``: Ray processes, on
    this node or others): each candidate is sent serialised (``tvm.ir.save_json``, the target's
    JSON), built by ``build_artifact`` and its file sent back and written under ``tmp_root``,
    where the runner (local, or RPC: it uploads the file to a board) finds it. A worker that
    dies fails only its candidates' builds (after the pool's own retries): failures are data."""

    def __init__(self, pool, *, tmp_root: str | None = None) -> None:
        super().__init__()
        self.pool = pool
        self.tmp_root = tmp_root
        self.seconds = 0.0
        self.built = 0
        self.pids: set[int] = set()  # the processes that built

    def build(self, build_inputs: list[BuilderInput]) -> list[BuilderResult]:
        import time

        import tvm

        t0 = time.perf_counter()
        # the target as its JSON string (Target(str) parses it back, host included)
        pending = [self.pool.submit(build_artifact, tvm.ir.save_json(inp.mod), str(inp.target))
                   for inp in build_inputs]
        out = []
        for p in pending:
            try:
                data, suffix, err, pid = p.result()
                self.pids.add(pid)
            except Exception as e:  # noqa: BLE001 - the worker (or its node) was lost for good
                data, suffix, err = None, "", f"worker lost: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if data is None:
                out.append(BuilderResult(None, f"PoolBuilder: {err}"))
                continue
            d = tempfile.mkdtemp(prefix="cosearch-build-", dir=self.tmp_root)
            path = os.path.join(d, "candidate" + suffix)
            with open(path, "wb") as f:
                f.write(data)
            out.append(BuilderResult(path, None))
        self.seconds += time.perf_counter() - t0
        self.built += len(build_inputs)
        return out
