"""`cosearch tune MODEL --target T --out DIR`: import, tune where trials help most,
compile, measure (if the target measures), write an artifact.

Every input is validated before any work -> one-line error, exit 2, nothing
written. Records reach the schedule database after every measured batch
(``cosearch.compile.engine``), so a kill loses at most the batch in flight;
running the command again tunes further from there. MetaSchedule's logs and
TVM's native warnings go to ``DIR/tune.log``; the console shows a progress
display and a summary table.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from cosearch.cli_args import add_schedule_options, duration_s, positive_int
from cosearch.errors import CosearchError

HELP = "tune and compile a model for a target, measure it, write an artifact"
DESCRIPTION = """\
MODEL is an .onnx file or SPACE:ARCH (e.g. nb201:'|nor_conv_3x3~0|+...'). Trials go first to tasks
the target's schedule database lacks, then to the tasks whose kernels still cost the model most per
trial spent; running it again tunes further."""  # argparse re-flows it


def register(sub) -> None:
    p = sub.add_parser("tune", help=HELP, description=DESCRIPTION)
    p.add_argument("model", metavar="MODEL", help="path to an .onnx file, or SPACE:ARCH")
    p.add_argument("--target", required=True, metavar="NAME|PATH", help="target name (see 'cosearch targets') or a .json file")
    p.add_argument("--out", required=True, metavar="DIR", help="artifact directory (new, empty, or a previous artifact)")
    p.add_argument("--trials", default=None, metavar="N",
                   help="tuning trials of this run (default 64; with --time: no cap but the clock)")
    p.add_argument("--trials-per-task", default=None, metavar="N", help="cap of trials per task in this run (default: none)")
    add_schedule_options(p, default="one per resolved target, see 'cosearch targets show NAME'")
    p.add_argument("--seed", default="0", metavar="S", help="seed for tuning, weights and inputs (default 0)")
    p.add_argument("--patience", default=None, metavar="N",
                   help="stop a task after N batches without gain (default 4; with --time: no stall rule unless given)")
    p.add_argument("--early-stop", default=None, metavar="RULE",
                   help="early-stop rule kind (stall, xgb, never, always; default stall with --patience)")
    p.add_argument("--time", default=None, metavar="DURATION",
                   help="wall-clock tuning budget, e.g. 10m: every task stops once it is spent, no stall rule "
                        "unless --patience is given. With at least 20 s per task the search is the wide one "
                        "(population 256, 2 genetic iterations, XGBoost cost model) on kernels costing >= 100 us; "
                        "else the cheap one (see docs/tuning.md). Default: --trials alone, cheap settings")
    p.add_argument("--layout", default=None, metavar="LAYOUT",
                   help="conv data layout at import: NCHW (default), NHWC, NCHW8c, NCHW16c or auto "
                        "(part of every workload: schedules tuned in one layout do not serve another)")
    p.add_argument("--repeat", default="30", metavar="N", help="timed repeats of the end-to-end measurement (default 30)")
    p.set_defaults(func=run)


def _summary(result, target, latency, note, t_tune, out, schedules, stream) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream, highlight=False, soft_wrap=True)
    table = Table(title=f"{len(result.tasks)} tasks on {target.name}", title_justify="left", box=None, pad_edge=False)
    for col, just in (("task", "left"), ("source", "left"), ("weight", "right"), ("trials", "right"),
                      ("errors", "right"), ("best µs", "right"), ("share", "right")):
        table.add_column(col, justify=just)
    costs = [t.weight * (t.best_us or 0.0) for t in result.tasks]
    total = sum(costs) or 1.0
    rows = sorted(zip(result.tasks, costs), key=lambda x: -x[1])
    for t, c in rows[:12]:
        table.add_row(t.name[:48], t.source, str(t.weight), str(t.trials), str(t.error_count),
                      "-" if t.best_us is None else f"{t.best_us:.2f}", f"{100 * c / total:.0f}%")
    if len(rows) > 12:
        table.add_row(f"... {len(rows) - 12} more", "", "", "", "", "", "")
    console.print(table)
    by_source: dict[str, int] = {}
    for t in result.tasks:
        by_source[t.source] = by_source.get(t.source, 0) + 1
    src = ", ".join(f"{n} {s}" for s, n in sorted(by_source.items())) or "none"
    console.print(f"target: {target.name}; tasks: {len(result.tasks)} ({src}); trials run: {result.trials_run}; "
                  f"tune+compile {t_tune:.1f} s; predicted (kernel sum) {total / 1000:.4f} ms")
    if latency is not None:
        console.print(f"latency: median {latency.median_ms:.4f} ms, p10 {latency.p10_ms:.4f} ms, "
                      f"p90 {latency.p90_ms:.4f} ms, n={latency.n}, threads={latency.threads}")
    else:
        console.print(f"latency: not measured ({note})")
    console.print(f"artifact: {out}  (run it: cosearch run {out}; log: {out / 'tune.log'})")
    console.print(f"schedules: {schedules}")


def run(args) -> int:
    t_start = time.perf_counter()
    # -- validate everything cheap first, then what needs a network / TVM -----------------
    trials = None if args.trials is None else positive_int("--trials", args.trials)
    per_task = None if args.trials_per_task is None else positive_int("--trials-per-task", args.trials_per_task)
    seed = positive_int("--seed", args.seed, minimum=0)
    # --patience: default 4; a clock-bounded tuning (--time) has no stall rule unless it is given
    patience = positive_int("--patience", args.patience) if args.patience is not None else (4 if args.time is None else None)
    max_seconds = None if args.time is None else duration_s("--time", args.time)
    if args.layout is not None:
        from cosearch.compile.frontend.layout import check_layout

        try:
            check_layout(args.layout)
        except CosearchError as e:
            raise CosearchError(f"--{e}") from None  # "--layout must be auto or one of ..."
    repeat = positive_int("--repeat", args.repeat)
    from cosearch.compile.pipeline import prepare_tune
    from cosearch.compile.tuning.config import TuneConfig

    if max_seconds is None:
        tune_cfg = TuneConfig(trials=trials or 64, trials_per_task=per_task, seed=seed, patience=patience)
    else:  # a deliberate long tuning: the clock bounds it, --trials (if given) caps it
        tune_cfg = TuneConfig.long(max_seconds, trials_per_task=per_task, seed=seed, patience=patience,
                                   **({"trials": trials} if trials else {}))
    job = prepare_tune(args.model, args.target, args.out, tune=tune_cfg, repeat=repeat, seed=seed,
                       early_stop=args.early_stop, schedules=args.schedules,
                       accept_foreign=args.accept_foreign_schedules, layout=args.layout)
    done = _work(job, max_seconds)
    _summary(done.result, job.target, done.latency, done.note, done.tune_seconds, job.out, job.schedules, sys.stdout)
    print(f"total {time.perf_counter() - t_start:.1f} s")
    if done.measure_error is not None:
        print(f"cosearch tune: error: measurement failed: {done.measure_error} (artifact and schedules were kept)",
              file=sys.stderr)
        return 1
    return 0


def _work(job, max_seconds: float | None):
    """The job under a progress display, TVM's native warnings and Python warnings in the log."""
    import shutil

    from cosearch.compile.pipeline import run_tune
    from cosearch.compile.tuning.logs import quiet_native_logs
    from cosearch.progress import ProgressDisplay

    log_dir = Path(tempfile.mkdtemp(prefix=".cosearch-tune-log-", dir=job.out.absolute().parent))
    log_file = log_dir / "tune.log"
    try:
        with quiet_native_logs(log_file) as console:
            with ProgressDisplay(f"tune {job.target.name}", total=None if max_seconds else job.tune.trials,
                                 unit="trials", stream=console) as bar:
                def progress(d: dict) -> None:
                    bar.update(d["trials_run"], tasks=f"{d['tasks_done']}/{d['tasks_total']}",
                               task=d["name"][:32], best_us=d["best_us"])

                done = run_tune(job, progress=progress, log_dir=log_dir)
        if log_file.exists():
            log_file.replace(job.out / "tune.log")
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    return done
