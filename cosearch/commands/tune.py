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

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from cosearch.cli_args import duration_s, positive_int
from cosearch.errors import CosearchError


def register(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="tune and compile a model for a target, measure it, write an artifact",
        description="MODEL is an .onnx file or SPACE:ARCH (e.g. nb201:'|nor_conv_3x3~0|+...'). "
        "Trials go first to tasks the target's schedule database lacks, then to the tasks whose kernels "
        "still cost the model most per trial spent; running it again tunes further.",
    )
    p.add_argument("model", metavar="MODEL", help="path to an .onnx file, or SPACE:ARCH")
    p.add_argument("--target", required=True, metavar="NAME|PATH", help="target name (see 'cosearch targets') or a .json file")
    p.add_argument("--out", required=True, metavar="DIR", help="artifact directory (new, empty, or a previous artifact)")
    p.add_argument("--trials", default=None, metavar="N",
                   help="tuning trials of this run (default 64; with --time: no cap but the clock)")
    p.add_argument("--trials-per-task", default=None, metavar="N", help="cap of trials per task in this run (default: none)")
    p.add_argument("--schedules", default=None, metavar="DIR",
                   help="schedule database (default: one per resolved target, see 'cosearch targets show NAME')")
    p.add_argument("--accept-foreign-schedules", action="store_true",
                   help="use a --schedules database tuned for another resolved target (CPU) with a warning")
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


def _check_schedules_dir(p: Path) -> Path:
    if p.exists() and not p.is_dir():
        raise CosearchError(f"--schedules {str(p)!r} is a file; expected a directory (created if missing)")
    from cosearch.fsio import creatable

    ok, probe = creatable(p)
    if not ok:
        raise CosearchError(f"--schedules {str(p)!r}: {str(probe)!r} is not writable")
    return p


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
        from cosearch.compile.layout import check_layout

        try:
            check_layout(args.layout)
        except CosearchError as e:
            raise CosearchError(f"--{e}") from None  # "--layout must be auto or one of ..."
    repeat = positive_int("--repeat", args.repeat)
    from cosearch.compile import early_stop as es
    from cosearch.compile import engine

    rule = None
    if args.early_stop is not None:
        es.RULES.get(args.early_stop)  # unknown kind -> one line naming the valid ones
    engine.model_kind(args.model)

    from cosearch.compile.artifact import check_out_dir
    from cosearch.compile.target import load_target

    target = load_target(args.target)
    out = check_out_dir(args.out)
    schedules = _check_schedules_dir(Path(args.schedules) if args.schedules else engine.default_schedules_dir(target))
    if target.measure == "rpc":
        from cosearch.compile.rpc import check_key

        check_key(target.rpc)  # bounded: unreachable tracker / unknown key -> CosearchError
    imported, model_desc = engine.load_model(args.model, seed=seed, layout=args.layout)  # malformed ONNX -> CosearchError
    from cosearch.compile.dbtarget import bind_database

    bind_database(schedules, target, accept_foreign=args.accept_foreign_schedules)  # foreign CPU -> refused

    from cosearch.compile.measure import MeasureConfig, measure
    from cosearch.compile.tune import TuneConfig, tune_and_compile

    if max_seconds is None:
        tune_cfg = TuneConfig(trials=trials or 64, trials_per_task=per_task, seed=seed, patience=patience)
    else:  # a deliberate long tuning: the clock bounds it, --trials (if given) caps it
        tune_cfg = TuneConfig.long(max_seconds, trials_per_task=per_task, seed=seed, patience=patience,
                                   **({"trials": trials} if trials else {}))
    if args.early_stop is not None:
        rule = es.load_rule(args.early_stop, schedules, patience=patience) if hasattr(es, "load_rule") \
            else es.create(args.early_stop)
    measure_cfg = MeasureConfig(repeat=repeat, seed=seed)
    config = {
        "command": "tune",
        "model": model_desc,
        "target": target.to_dict(),
        "out": str(out.absolute()),
        "schedules": str(schedules.absolute()),
        "seed": seed,
        "early_stop": (rule.config() if rule is not None
                       else {"kind": "stall", "patience": patience} if patience is not None else {"kind": "never"}),
        "tune": dataclasses.asdict(tune_cfg),
        "measure": dataclasses.asdict(measure_cfg),
    }

    # -- work ----------------------------------------------------------------------------
    from cosearch.progress import ProgressDisplay

    log_dir = Path(tempfile.mkdtemp(prefix=".cosearch-tune-log-", dir=out.absolute().parent))
    log_file = log_dir / "tune.log"
    try:
        # TVM's native warnings (fd 2) and Python warnings go to the log; progress to the real stderr
        with engine.quiet_native_logs(log_file) as console:
            t0 = time.perf_counter()
            with ProgressDisplay(f"tune {target.name}", total=None if max_seconds else tune_cfg.trials, unit="trials",
                                 stream=console) as bar:
                def progress(d: dict) -> None:
                    bar.update(d["trials_run"], tasks=f"{d['tasks_done']}/{d['tasks_total']}",
                               task=d["name"][:32], best_us=d["best_us"])

                result = tune_and_compile(imported, target, database_dir=schedules, config=tune_cfg, early_stop=rule,
                                          progress=progress, log_dir=log_dir)
            t_tune = time.perf_counter() - t0

            latency, note, measure_error = None, None, None
            t0 = time.perf_counter()
            if target.measure == "none":
                note = f"target {target.name!r} is compile-only (measure: none)"
            else:
                res = measure(result.executable, target, imported.inputs, config=measure_cfg)
                if res.ok:
                    latency = res.latency
                else:
                    measure_error = res.error
                    note = f"measurement failed ({res.where}): {res.error}"
            t_measure = time.perf_counter() - t0

            seconds = {**{f"tune.{k}": round(v, 3) for k, v in (result.seconds or {}).items()},
                       "tune_and_compile": round(t_tune, 3), "measure": round(t_measure, 3)}
            from cosearch.compile.artifact import write_artifact

            write_artifact(out, executable=result.executable, target=target, imported=imported, tasks=result.tasks,
                           latency=latency, latency_note=note, config=config,
                           tuning={"trials_run": result.trials_run, "trials_per_iter": result.trials_per_iter,
                                   "search": result.search, "seconds": seconds})
            if rule is not None and rule.kind == "xgb":  # the next run starts from a model of every history so far
                from cosearch.compile.stop_model import refit_and_save

                refit_and_save(schedules)
        if log_file.exists():
            log_file.replace(out / "tune.log")
    finally:
        import shutil

        shutil.rmtree(log_dir, ignore_errors=True)

    _summary(result, target, latency, note, t_tune, out, schedules, sys.stdout)
    print(f"total {time.perf_counter() - t_start:.1f} s")
    if measure_error is not None:
        print(f"cosearch tune: error: measurement failed: {measure_error} (artifact and schedules were kept)",
              file=sys.stderr)
        return 1
    return 0
