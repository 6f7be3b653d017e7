"""`cosearch tune MODEL --target T --out DIR`: import, tune what the schedule
database lacks, compile, measure (if the target measures), write an artifact.

Every input is validated before any work (budgets, target, output directory,
schedules directory, RPC tracker, model) -> one-line error, exit 2, nothing
written. Tuning records go to the schedule database as they are merged, so a
later failure (a crashed measurement) loses no completed tuning work.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from cosearch.errors import CosearchError


def register(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="tune and compile a model for a target, measure it, write an artifact",
        description="MODEL is an .onnx file or SPACE:ARCH (e.g. nb201:'|nor_conv_3x3~0|+...'). "
        "Tasks whose schedules are already in the target's schedule database are not re-tuned.",
    )
    p.add_argument("model", metavar="MODEL", help="path to an .onnx file, or SPACE:ARCH")
    p.add_argument("--target", required=True, metavar="NAME|PATH", help="target name (see 'cosearch targets') or a .json file")
    p.add_argument("--out", required=True, metavar="DIR", help="artifact directory (new, empty, or a previous artifact)")
    p.add_argument("--trials", default="64", metavar="N", help="total tuning trials (default 64)")
    p.add_argument("--trials-per-task", default=None, metavar="N", help="cap of trials per task (default: none)")
    p.add_argument("--schedules", default=None, metavar="DIR", help="schedule database (default <repo>/schedules/<target>/)")
    p.add_argument("--seed", default="0", metavar="S", help="seed for tuning, weights and inputs (default 0)")
    p.add_argument("--patience", default="4", metavar="N", help="stop a task after N batches without gain (default 4)")
    p.add_argument("--repeat", default="30", metavar="N", help="timed repeats of the end-to-end measurement (default 30)")
    p.set_defaults(func=run)


def _int(name: str, text: str | None, minimum: int) -> int:
    try:
        v = int(str(text))
    except ValueError:
        raise CosearchError(f"{name} must be an integer >= {minimum}, got {text!r}") from None
    if v < minimum:
        raise CosearchError(f"{name} must be an integer >= {minimum}, got {v}")
    return v


def default_schedules_dir(target_name: str) -> Path:
    import cosearch

    return Path(cosearch.__file__).resolve().parents[1] / "schedules" / target_name


def _check_schedules_dir(p: Path) -> Path:
    if p.exists() and not p.is_dir():
        raise CosearchError(f"--schedules {str(p)!r} is a file; expected a directory (created if missing)")
    probe = p.absolute()
    while not probe.exists():
        probe = probe.parent
    import os

    if not os.access(probe, os.W_OK | os.X_OK):
        raise CosearchError(f"--schedules {str(p)!r}: {str(probe)!r} is not writable")
    return p


def _model_kind(text: str) -> str:
    """'onnx' or 'space'; a missing .onnx file is an error here (before any work)."""
    p = Path(text)
    if text.lower().endswith(".onnx") or p.exists():
        if not p.exists():
            raise CosearchError(f"model file {text!r} does not exist; MODEL is an .onnx file or SPACE:ARCH")
        if not p.is_file():
            raise CosearchError(f"model {text!r} is a directory; MODEL is an .onnx file or SPACE:ARCH")
        try:
            with open(p, "rb") as f:
                f.read(1)
        except OSError as e:
            raise CosearchError(f"model file {text!r} cannot be read: {e.strerror or e}") from None
        return "onnx"
    if ":" in text:
        return "space"
    raise CosearchError(f"MODEL {text!r} is neither an existing .onnx file nor SPACE:ARCH")


def _import_model(text: str, kind: str, seed: int):
    """-> (ImportedModel, description dict for the config)."""
    from cosearch.compile.frontend import from_onnx, from_torch

    if kind == "onnx":
        return from_onnx(text), {"kind": "onnx", "path": str(Path(text).resolve())}
    from cosearch.space import parse_model_spec

    space, arch = parse_model_spec(text)
    import torch

    torch.manual_seed(seed)
    module = space.build(arch, seed=seed).eval()
    shape = tuple(space.input_shape(arch))
    gen = torch.Generator().manual_seed(seed)
    example = torch.randn(shape, generator=gen)
    return from_torch(module, (example,)), {"kind": "space", "spec": text, "space": space.config(), "arch": arch,
                                            "input_shape": list(shape)}


def run(args) -> int:
    t_start = time.perf_counter()
    # -- validate everything cheap first, then what needs a network / TVM -----------------
    trials = _int("--trials", args.trials, 1)
    per_task = None if args.trials_per_task is None else _int("--trials-per-task", args.trials_per_task, 1)
    seed = _int("--seed", args.seed, 0)
    patience = _int("--patience", args.patience, 1)
    repeat = _int("--repeat", args.repeat, 1)
    kind = _model_kind(args.model)

    from cosearch.compile.artifact import check_out_dir
    from cosearch.compile.target import load_target

    target = load_target(args.target)
    out = check_out_dir(args.out)
    schedules = _check_schedules_dir(Path(args.schedules) if args.schedules else default_schedules_dir(target.name))
    if target.measure == "rpc":
        from cosearch.compile.rpc import check_key

        check_key(target.rpc)  # bounded: unreachable tracker / unknown key -> CosearchError
    imported, model_desc = _import_model(args.model, kind, seed)  # malformed ONNX -> CosearchError

    from cosearch.compile.measure import MeasureConfig, measure
    from cosearch.compile.tune import TuneConfig, tune_and_compile

    names = {f.name for f in dataclasses.fields(TuneConfig)}
    wanted = {"trials": trials, "trials_per_task": per_task, "seed": seed, "patience": patience}
    tune_cfg = TuneConfig(**{k: v for k, v in wanted.items() if k in names})
    measure_cfg = MeasureConfig(repeat=repeat, seed=seed)
    config = {
        "command": "tune",
        "model": model_desc,
        "target": target.to_dict(),
        "out": str(out.absolute()),
        "schedules": str(schedules.absolute()),
        "seed": seed,
        "tune": dataclasses.asdict(tune_cfg),
        "measure": dataclasses.asdict(measure_cfg),
    }

    # -- work ----------------------------------------------------------------------------
    schedules.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = tune_and_compile(imported, target, database_dir=schedules, config=tune_cfg)
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
                           "seconds": seconds})

    # -- summary -------------------------------------------------------------------------
    by_source: dict[str, int] = {}
    for t in result.tasks:
        by_source[t.source] = by_source.get(t.source, 0) + 1
    src = ", ".join(f"{n} {s}" for s, n in sorted(by_source.items())) or "none"
    print(f"target: {target.name}; tasks: {len(result.tasks)} ({src}); trials run: {result.trials_run}; "
          f"tune+compile {t_tune:.1f} s")
    if latency is not None:
        print(f"latency: median {latency.median_ms:.4f} ms, p10 {latency.p10_ms:.4f} ms, p90 {latency.p90_ms:.4f} ms, "
              f"n={latency.n}, threads={latency.threads}")
    else:
        print(f"latency: not measured ({note})")
    print(f"artifact: {out} (schedules: {schedules}); total {time.perf_counter() - t_start:.1f} s")
    if measure_error is not None:
        print(f"cosearch tune: error: measurement failed: {measure_error} (artifact and schedules were kept)",
              file=sys.stderr)
        return 1
    return 0
