"""``train_artifact``: train an architecture, recompile it with the schedule database
without tuning, and write a trained artifact (the library behind ``cosearch train``).

1. The source is an artifact folder written by ``cosearch tune`` / ``cosearch search``
   (its ``config.json`` names the space settings, the architecture, the target and the
   schedule database) or ``SPACE:ARCH`` (then ``target`` is required).
2. The architecture is trained (``train_arch``, no early stop) on the dataset's train
   split; the learning curve is the validation accuracy after every epoch.
3. The trained network is imported, planned and compiled with ``engine.compile_plan``
   against the schedule database -- **nothing is tuned**: workload identity depends on
   shapes and ops, not on weight values, so every task the untrained artifact had from
   the database (``source`` ``db`` or ``tuned``) must be ``db`` again. That is checked
   and a difference is an error (``CosearchError``), not a warning.
4. Held-out accuracy is computed twice on the same held-out split: through the
   **compiled TVM module** (``relax.VirtualMachine``, the artifact's batch size) and
   through PyTorch; their argmax agreement is recorded too.
5. The artifact is written atomically (``write_artifact``); ``meta.json`` gains
   ``accuracy``: ``tvm_heldout``, ``torch_heldout``, ``agreement``, ``heldout_n``,
   ``epochs``, ``dataset`` (name, source, split, normalisation), ``curve``,
   ``val_final``, ``train_seconds``. Inputs of the module are the *standardised*
   images (``accuracy.dataset.normalise``: subtract mean, divide by std per channel).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cosearch.errors import CosearchError


@dataclass
class TrainedArtifact:
    out: Path
    accuracy: dict[str, Any]
    tasks: list[dict[str, Any]]
    latency: Any = None
    latency_note: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class Source:
    space: Any
    arch: str
    spec: str
    target: Any
    schedules: Path
    batch: int
    artifact: Path | None = None
    tasks: list[dict[str, Any]] | None = None  # the untrained artifact's meta["tasks"]


def resolve_source(model: str, *, target: str | None = None, schedules: str | None = None) -> Source:
    """``DIR`` (artifact) or ``SPACE:ARCH`` -> what to train and where to compile it (cheap, validated)."""
    from cosearch.compile import engine
    from cosearch.compile.target import load_target
    from cosearch.space import create_space, parse_model_spec

    p = Path(model)
    if p.is_dir():
        from cosearch.compile.deploy.artifact import read_artifact

        art = read_artifact(p)
        cfg = art.meta.get("config") or {}
        m = cfg.get("model") or {}
        if m.get("kind") != "space" or not isinstance(m.get("space"), dict) or not m.get("arch"):
            raise CosearchError(f"artifact {str(p)!r} was not built from SPACE:ARCH (model kind {m.get('kind')!r}); "
                                "cosearch train needs an artifact of a search-space architecture or SPACE:ARCH")
        settings = {k: v for k, v in m["space"].items() if k != "space"}
        space = create_space(m["space"]["space"], **settings)
        arch = space.canonical(m["arch"])
        tcfg = cfg.get("target") or {}
        tname = target or tcfg.get("path") or tcfg.get("name") or art.target.get("name")
        if not tname:
            raise CosearchError(f"artifact {str(p)!r} names no target; pass --target")
        if target is None and tcfg.get("path") and not Path(tcfg["path"]).exists():
            tname = tcfg.get("name") or tname
        tgt = load_target(tname)
        sched = Path(schedules) if schedules else Path(cfg["schedules"]) if cfg.get("schedules") else \
            engine.default_schedules_dir(tgt)
        if not sched.is_dir():
            raise CosearchError(f"schedule database {str(sched)!r} of artifact {str(p)!r} does not exist; "
                                "pass --schedules DIR (the database the artifact was tuned with)")
        batch = int(art.meta["inputs"][0]["shape"][0]) if art.meta.get("inputs") else 1
        return Source(space, arch, m.get("spec") or f"{space.name}:{arch}", tgt, sched, batch, p, list(art.meta["tasks"]))
    if p.exists():
        raise CosearchError(f"{model!r} is a file; accepted: an artifact folder or SPACE:ARCH")
    if ":" not in model:
        raise CosearchError(f"{model!r} is neither an artifact folder nor SPACE:ARCH")
    space, arch = parse_model_spec(model)
    if target is None:
        raise CosearchError("SPACE:ARCH needs --target NAME|PATH (an artifact folder names its own)")
    tgt = load_target(target)
    sched = Path(schedules) if schedules else engine.default_schedules_dir(tgt)
    if sched.exists() and not sched.is_dir():
        raise CosearchError(f"--schedules {str(sched)!r} is a file; expected a directory")
    return Source(space, arch, model, tgt, sched, 1)


def tvm_accuracy(executable, x: np.ndarray, y: np.ndarray, batch: int = 1) -> tuple[float, np.ndarray]:
    """Top-1 accuracy of a compiled Relax executable (input batch ``batch``) on ``x``, ``y``;
    returns (accuracy, predicted classes). The last partial batch is padded and trimmed."""
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    vm = relax.VirtualMachine(executable, dev)
    preds = []
    n = len(x)
    for i in range(0, n, batch):
        chunk = x[i:i + batch]
        k = len(chunk)
        if k < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - k, axis=0)])
        out = vm["main"](tvm.runtime.tensor(np.ascontiguousarray(chunk, dtype=np.float32), dev))
        if isinstance(out, (list, tuple)) or (hasattr(out, "__len__") and not hasattr(out, "numpy")):
            out = out[0]
        preds.append(out.numpy()[:k].argmax(1))
    pred = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    return float((pred == y).mean()) if n else 0.0, pred


def _write_with_accuracy(out, *, extra: dict[str, Any], **kw) -> Path:
    """The artifact with ``extra`` (``accuracy``) added to ``meta.json``, written atomically."""
    from cosearch.compile.deploy import artifact as A

    return A.write_artifact(out, extra_meta=A.jsonable(extra), **kw)


def check_no_retune(before: list[dict[str, Any]] | None, after: list[dict[str, Any]]) -> None:
    """Every task the untrained artifact had from the database must come from it again."""
    if before is None:
        return
    names_b = [t.get("name") for t in before]
    names_a = [t.get("name") for t in after]
    if names_b != names_a:
        raise CosearchError(f"the trained network has other tasks than the artifact ({len(names_a)} vs {len(names_b)}, "
                            "names differ): its graph changed; retune it with cosearch tune")
    lost = [b["name"] for b, a in zip(before, after) if b.get("source") in ("db", "tuned") and a.get("source") != "db"]
    if lost:
        raise CosearchError(f"{len(lost)} task(s) the artifact had from the schedule database are not in it for the "
                            f"trained network ({', '.join(lost[:3])}); was --schedules the database it was tuned with?")


def train_artifact(model: str, *, out: str | os.PathLike, data: str | None = None, config=None,
                   target: str | None = None, schedules: str | None = None, accept_foreign_schedules: bool = False,
                   split_seed: int = 0, limit: int | None = None, measure_repeat: int = 30,
                   progress: Callable[[str], None] | None = None) -> TrainedArtifact:
    """Train ``model`` (artifact folder or SPACE:ARCH), recompile without tuning, write ``out``."""
    from cosearch.compile.deploy.artifact import check_out_dir
    from cosearch.train.data import check_spec, prepare_data
    from cosearch.train.trainer import TrainConfig, accuracy, build_trained, train_arch

    say = progress or (lambda s: None)
    cfg = config or TrainConfig()
    t_all = time.perf_counter()
    # -- validate cheap things first, nothing written -----------------------------------
    data_spec = check_spec(data)
    out_p = check_out_dir(out)
    src = resolve_source(model, target=target, schedules=schedules)
    if src.artifact is not None and out_p.absolute() == src.artifact.absolute():
        raise CosearchError(f"--out {str(out)!r} is the source artifact; give another folder")
    shape = tuple(int(s) for s in src.space.input_shape(src.arch, src.batch))
    d = prepare_data(data_spec, shape, int(getattr(src.space, "num_classes", 10)), seed=split_seed, limit=limit)
    from cosearch.compile.target.binding import bind_database

    bind_database(src.schedules, src.target, accept_foreign=accept_foreign_schedules)  # foreign CPU -> refused
    seconds: dict[str, float] = {}

    # -- train ------------------------------------------------------------------------------
    say(f"training {src.spec} on {d.name} ({len(d.x_train)} train / {len(d.x_val)} val images, {cfg.epochs} epochs)")
    t0 = time.perf_counter()
    res = train_arch(src.space, src.arch, d, cfg)
    seconds["train"] = round(time.perf_counter() - t0, 3)
    net = build_trained(src.space, src.arch, res, seed=cfg.seed)
    torch_acc = accuracy(net, d.x_heldout, d.y_heldout, cfg.eval_batch)
    say(f"validation curve {[round(v, 4) for v in res.curve]}; torch held-out {torch_acc:.4f}")

    # -- recompile with the database (no tuning), held-out through TVM, write -------------------------
    from cosearch.compile import engine

    with engine.quiet_native_logs(None):  # TVM's C++ warnings (fd 2) while compiling / exporting
        return _compile_and_write(src, d, res, net, cfg, torch_acc, out, out_p, shape, seconds, measure_repeat, t_all)


def _compile_and_write(src, d, res, net, cfg, torch_acc, out, out_p, shape, seconds, measure_repeat, t_all):
    import torch

    from cosearch.compile import engine
    from cosearch.compile.frontend import from_torch

    t0 = time.perf_counter()
    example = d.x_heldout[:1].expand(src.batch, -1, -1, -1).contiguous()
    with torch.no_grad():
        imported = from_torch(net, (example,))
    plan = engine.plan(imported, src.target)
    exe = engine.compile_plan(plan, src.schedules)
    reports = engine.task_reports(plan, src.schedules)
    tasks = [{"name": r.name, "source": r.source} for r in reports]
    check_no_retune(src.tasks, tasks)
    seconds["compile"] = round(time.perf_counter() - t0, 3)

    # -- held-out through the compiled module ---------------------------------------------------
    t0 = time.perf_counter()
    ok, why = src.target.runs_here() if hasattr(src.target, "runs_here") else (True, None)
    tvm_acc, agreement, note = None, None, None
    if ok and getattr(src.target, "export", "so") == "so":
        tvm_acc, pred = tvm_accuracy(exe, d.x_heldout.numpy(), d.y_heldout.numpy(), src.batch)
        with torch.no_grad():
            tpred = np.concatenate([net(d.x_heldout[i:i + 256]).argmax(1).numpy() for i in range(0, len(d.x_heldout), 256)])
        agreement = float((pred == tpred).mean())
    else:
        note = f"the compiled module cannot run here: {why or 'cross target'}"
    seconds["tvm_heldout"] = round(time.perf_counter() - t0, 3)

    latency, lat_note = None, None
    if src.target.measure == "none":
        lat_note = f"target {src.target.name!r} is compile-only (measure: none)"
    elif ok:
        from cosearch.compile.deploy.measure import MeasureConfig, measure

        t0 = time.perf_counter()
        r = measure(exe, src.target, imported.inputs, config=MeasureConfig(repeat=measure_repeat, seed=cfg.seed))
        latency, lat_note = (r.latency, None) if r.ok else (None, f"measurement failed ({r.where}): {r.error}")
        seconds["measure"] = round(time.perf_counter() - t0, 3)
    else:
        lat_note = note

    acc = {"tvm_heldout": tvm_acc, "torch_heldout": torch_acc, "agreement": agreement, "heldout_n": len(d.y_heldout),
           "batch": src.batch, "epochs": res.epochs_run, "dataset": d.config(), "curve": res.curve,
           "val_final": res.accuracy_val, "train_seconds": res.train_seconds}
    if note:
        acc["tvm_heldout_note"] = note
    run_cfg = {
        "command": "train",
        "model": {"kind": "space", "spec": src.spec, "space": src.space.config(), "arch": src.arch,
                  "input_shape": list(shape)},
        "source_artifact": str(src.artifact.absolute()) if src.artifact else None,
        "target": src.target.to_dict() if hasattr(src.target, "to_dict") else {"name": src.target.name},
        "out": str(Path(out).absolute()),
        "schedules": str(src.schedules.absolute()),
        "seed": cfg.seed,
        "train": cfg.to_dict(),
        "data": d.config(),
        "measure": {"repeat": measure_repeat},
    }
    seconds["total"] = round(time.perf_counter() - t_all, 3)
    path = _write_with_accuracy(
        out_p, extra={"accuracy": acc}, executable=exe, target=src.target, imported=imported, tasks=reports,
        latency=latency, latency_note=lat_note, config=run_cfg, tuning={"trials_run": 0, "seconds": seconds})
    return TrainedArtifact(Path(path), acc, tasks, latency, lat_note, seconds)


__all__ = ["Source", "TrainedArtifact", "check_no_retune", "resolve_source", "train_artifact", "tvm_accuracy"]
