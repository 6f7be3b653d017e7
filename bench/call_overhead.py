"""What one tuning call costs beyond its trials: a measuring worker per call vs one shared.

    python bench/call_overhead.py            # NB201 bench net tasks (C=16, N=5, 32x32)

The joint search tunes in many small calls (a batch of a few tasks, 8-32 trials). Each call
used to construct its own MetaSchedule ``LocalRunner``, whose worker process imports TVM and
passes a sanity check before the first measurement; calls now share one per measurement
setting (``cosearch.compile.tuning.runner.acquire_runner``). This times the same calls both ways,
interleaved (``--rounds`` rounds, each running every call shape once per mode, alternating
which mode goes first), into fresh databases: ``fresh`` shuts the shared worker down before
every call (``runner.close_runners``), which is what every call paid before. Reports per shape
the median seconds of each mode, their difference (the per-call set-up saved) and ratio.

Times things: run it alone on a quiet machine. Writes ``bench/results/call_overhead.json``
(resolved config, CPU, machine key) and prints a table.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import MODELS, print_table, write_results  # noqa: E402

#: (trials, tasks) of one call: a new-task batch, refine and finishing calls of the joint search
SHAPES = ((8, 1), (32, 1), (16, 2), (64, 8))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--target", default="host")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from cosearch.compile import engine
    from cosearch.compile.tuning import runner as runners
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.space import create_space

    target = load_target(args.target)
    space_name, arch, opts = MODELS["nb201"]
    plan = engine.plan(engine.import_arch(create_space(space_name, **opts), arch), target)
    tasks = sorted((t for t in plan.tasks if t.tunable), key=lambda t: -t.features.flops)
    samples: dict[tuple[str, int, int], list[float]] = {}
    root = Path(tempfile.mkdtemp(prefix="cosearch-call-overhead-"))
    try:
        for r in range(args.rounds):
            modes = ("fresh", "shared") if r % 2 == 0 else ("shared", "fresh")
            for trials, k in SHAPES:
                for mode in modes:
                    db = root / f"{mode}-{trials}-{k}-{r}"
                    if mode == "fresh":
                        runners.close_runners()
                    else:
                        runners.acquire_runner(target, TuneConfig())  # started outside the timed call
                    cfg = TuneConfig(trials=trials, patience=None, seed=args.seed + r)
                    t0 = time.perf_counter()
                    out = engine.tune_tasks(tasks[:k], target, database_dir=db, trials=trials, config=cfg)
                    samples.setdefault((mode, trials, k), []).append(time.perf_counter() - t0)
                    assert out.trials_run > 0, (mode, trials, k)
                    shutil.rmtree(db, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = []
    for trials, k in SHAPES:
        f = statistics.median(samples[("fresh", trials, k)])
        s = statistics.median(samples[("shared", trials, k)])
        rows.append({"trials": trials, "tasks": k, "fresh_s": round(f, 3), "shared_s": round(s, 3),
                     "saved_s": round(f - s, 3), "fresh_over_shared": round(f / s, 2),
                     "samples": {"fresh": [round(x, 3) for x in samples[("fresh", trials, k)]],
                                 "shared": [round(x, 3) for x in samples[("shared", trials, k)]]}})
    path = write_results("call_overhead", {**vars(args), "net": "nb201", "arch": arch, "shapes": SHAPES},
                         rows, out=args.out, machine_key=target.machine_key())
    print_table(rows, ["trials", "tasks", "fresh_s", "shared_s", "saved_s", "fresh_over_shared"])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
