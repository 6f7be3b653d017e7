"""The runner that measures candidates: local (shared across calls) or RPC (per call)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from cosearch.errors import CosearchError

if TYPE_CHECKING:
    from cosearch.compile.target import TargetSpec
    from cosearch.compile.tuning.config import TuneConfig


def _set_threads(n: int) -> None:  # runs in the runner's worker process
    import os

    os.environ["TVM_NUM_THREADS"] = str(n)


def _runner_threads(target: "TargetSpec") -> int:
    """Threads a local measuring worker runs kernels with."""
    return target.threads or target.num_cores


def make_runner(target: "TargetSpec", config: "TuneConfig"):
    import functools

    from tvm.s_tir import meta_schedule as ms

    evaluator = ms.runner.EvaluatorConfig(
        number=config.number, repeat=config.repeat, min_repeat_ms=0, enable_cpu_cache_flush=False
    )
    if target.measure == "rpc":
        assert target.rpc is not None  # guaranteed by the target loader
        rpc = ms.runner.RPCConfig(
            tracker_host=target.rpc.tracker_host,
            tracker_port=target.rpc.tracker_port,
            tracker_key=target.rpc.key,
            session_timeout_sec=int(math.ceil(target.rpc.session_timeout_s)),
        )
        # one candidate per board at a time, every board at once: the tracker leases each session a
        # free board (a busy one is never handed out twice); a failed measurement is measured again
        # (``tuning.retry``: a hung or rebooted board's candidate goes to another board)
        from cosearch.compile.deploy.rpc import boards
        from cosearch.compile.tuning.retry import RPC_RETRIES, RetryingRunner, bounded_cleanup, bounded_session

        inner = ms.runner.RPCRunner(rpc_config=rpc, evaluator_config=evaluator, max_workers=max(1, boards(target.rpc)),
                                    f_create_session=bounded_session, f_cleanup=bounded_cleanup)
        return RetryingRunner(inner, retries=RPC_RETRIES)
    return ms.runner.LocalRunner(
        timeout_sec=config.runner_timeout_s,
        evaluator_config=evaluator,
        initializer=functools.partial(_set_threads, _runner_threads(target)),
    )


#: local runners kept for the process's life, one per measurement setting. Constructing a
#: ``LocalRunner`` starts a worker process that imports TVM and passes a sanity check: 3.5 s of
#: a 4.4 s call of 8 trials (cProfile, NB201 C=4 task, znver4), paid by every tuning call of a
#: search when each made its own. The worker restarts by itself after a timeout or a crash
#: within a call (``PopenWorker``); one found dead between calls is restarted before the next.
_LOCAL_RUNNERS: dict[tuple, Any] = {}


def acquire_runner(target: "TargetSpec", config: "TuneConfig"):
    """The runner of one tuning call: a local one is shared by every call with the same
    threads and measurement settings (``release_runner`` keeps it); an RPC one is new."""
    import atexit

    from tvm.s_tir import meta_schedule as ms

    if target.measure == "rpc":
        return make_runner(target, config)
    key = (_runner_threads(target), config.number, config.repeat, config.runner_timeout_s)  # what make_runner reads
    runner = _LOCAL_RUNNERS.get(key)
    if runner is None:
        runner = make_runner(target, config)
        if type(runner) is ms.runner.LocalRunner:  # a wrapped or replaced factory (tests) is not kept
            if not _LOCAL_RUNNERS:
                atexit.register(close_runners)
            _LOCAL_RUNNERS[key] = runner
    else:  # a worker that died since (killed, crashed) would fail the next candidate: start anew
        for worker in list(runner.pool._worker_map.values()):
            if worker._proc is not None and not worker.is_alive():
                worker.kill()
    return runner


def release_runner(runner) -> None:
    """End of a call: a shared local runner stays (also when wrapped: ``RetryingRunner``, a test's
    wrapper, each holding it as ``inner``); any other is shut down."""
    base = getattr(runner, "inner", runner)
    if any(base is r for r in _LOCAL_RUNNERS.values()):
        return
    pool = getattr(base, "pool", None)
    if pool is not None:
        pool.shutdown()


def close_runners() -> None:
    """Shut the shared local runners' workers down (at exit)."""
    while _LOCAL_RUNNERS:
        _, runner = _LOCAL_RUNNERS.popitem()
        runner.pool.shutdown()


def check_rpc_reachable(target: "TargetSpec") -> None:
    """Bounded tracker connect + key check (``cosearch.compile.deploy.rpc``), before any tuning."""
    from cosearch.compile.deploy.rpc import check_key

    assert target.rpc is not None  # guaranteed by the target loader
    try:
        check_key(target.rpc)
    except CosearchError as e:
        raise CosearchError(f"target {target.name!r}: {e}; start the tracker/server or edit rpc in {target.path}") from e
