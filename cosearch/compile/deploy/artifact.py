"""Compiled-model artifacts: one directory, written atomically.

Layout of ``out_dir``::

    model.so | model.tar   compiled Relax VM executable (tar = objects for a cross target)
    model.onnx             the model as imported (reference for ``cosearch run``)
    meta.json              schema marker, target, target_identity (what the code needs
                           of a CPU: arch, mcpu, ISA features, cores; see
                           ``TargetSpec.identity``), versions, inputs/outputs, tasks,
                           latency, tuning stats, resolved config
    config.json            the resolved run config (same as meta["config"])

``write_artifact`` builds everything in a temp dir next to ``out_dir`` and
renames it into place; an existing artifact is renamed aside first and removed
after. ``out_dir`` must be missing, empty, or a previous artifact -- anything
else is refused before a byte is written (``check_out_dir``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from cosearch.errors import CosearchError, first_line

SCHEMA = "cosearch.artifact/1"
META = "meta.json"
CONFIG = "config.json"
ONNX = "model.onnx"
LIBRARIES = ("model.so", "model.tar")

_VERSION_PACKAGES = {
    "tvm": "apache-tvm",
    "tvm_ffi": "apache-tvm-ffi",
    "torch": "torch",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "cosearch": "cosearch",
}


# --------------------------------------------------------------------------- out_dir rules
def is_artifact_dir(path: str | os.PathLike) -> bool:
    """True if ``path/meta.json`` carries our schema marker."""
    meta = Path(path) / META
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("schema") == SCHEMA


def check_out_dir(out_dir: str | os.PathLike, *, overwrite_artifact: bool = True) -> Path:
    """Validate an output directory before any work. Accepted: missing, empty,
    or a previous cosearch artifact (when ``overwrite_artifact``)."""
    p = Path(out_dir)
    if p.exists() and not p.is_dir():
        raise CosearchError(f"output {str(p)!r} is a file, not a directory; give a new or empty directory")
    if p.is_dir():
        try:
            entries = sorted(e.name for e in p.iterdir())
        except OSError as e:
            raise CosearchError(f"output directory {str(p)!r} cannot be read: {e.strerror or e}") from None
        if entries:
            if not is_artifact_dir(p):
                shown = ", ".join(entries[:5]) + (f", ... ({len(entries)} entries)" if len(entries) > 5 else "")
                raise CosearchError(
                    f"output directory {str(p)!r} is not empty and is not a cosearch artifact (holds {shown}); "
                    "accepted: a new or empty directory, or a previous artifact to replace"
                )
            if not overwrite_artifact:
                raise CosearchError(f"output directory {str(p)!r} already holds an artifact and overwrite is off")
    from cosearch.fsio import creatable

    ok, probe = creatable(p.absolute().parent)
    if not ok:
        raise CosearchError(f"cannot create output directory {str(p)!r}: {str(probe)!r} is not writable")
    return p


# --------------------------------------------------------------------------- meta pieces
def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, dist in _VERSION_PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def _onnx_outputs(onnx_model) -> list[dict[str, Any]]:
    from onnx import helper

    outs = []
    for vi in onnx_model.graph.output:
        t = vi.type.tensor_type
        shape = None
        if t.HasField("shape"):
            shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        dtype = None
        if t.elem_type:
            dtype = str(helper.tensor_dtype_to_np_dtype(t.elem_type))
        outs.append({"name": vi.name, "shape": shape, "dtype": dtype})
    return outs


def _task_dict(t: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(t):
        d = dataclasses.asdict(t)
    elif isinstance(t, dict):
        d = dict(t)
    else:
        raise CosearchError(f"task report must be a dataclass or dict, got {type(t).__name__}")
    return {
        "name": d.get("name"),
        "source": d.get("source"),
        "trials": d.get("trials"),
        "best_us": d.get("best_us"),
        **{k: d[k] for k in ("error_count", "weight", "serial") if k in d},
    }


def jsonable(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return jsonable(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and x != x:  # NaN -> null, JSON has no NaN
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


def _tuning_block(tuning: dict[str, Any] | None, imported) -> dict[str, Any]:
    """``tuning`` with the import stages' seconds merged into ``seconds``."""
    out = dict(tuning or {})
    secs = dict(out.get("seconds") or {})
    for k, v in (getattr(imported, "seconds", None) or {}).items():
        secs.setdefault(k, round(float(v), 3))
    out["seconds"] = secs
    return out


def _runtime_block(latency, target) -> dict[str, Any] | None:
    settings = latency.runtime() if latency is not None else None
    if settings is None and target.threads is not None:
        from cosearch.compile.deploy.threads import RuntimeSettings

        settings = RuntimeSettings(int(target.threads))
    return settings.to_dict() if settings is not None else None


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(jsonable(data), indent=2, sort_keys=False) + "\n")


# --------------------------------------------------------------------------- write
def write_artifact(
    out_dir: str | os.PathLike,
    *,
    executable,
    target,
    imported,
    tasks: Iterable[Any],
    latency=None,
    config: dict[str, Any],
    tuning: dict[str, Any] | None = None,
    latency_note: str | None = None,
    overwrite_artifact: bool = True,
    extra_meta: dict[str, Any] | None = None,
) -> Path:
    """Write the artifact atomically and return its path.

    ``executable``: a ``tvm.compile`` result; ``target``: ``TargetSpec``;
    ``imported``: ``ImportedModel`` (``inputs``, ``onnx_model``, ``seconds``);
    ``tasks``: ``TaskReport``s; ``latency``: ``Latency`` or ``None`` (then
    ``latency_note`` says why); ``tuning``: e.g. ``{"trials_run": .., "seconds": {...}}``.
    """
    import onnx

    out = check_out_dir(out_dir, overwrite_artifact=overwrite_artifact).absolute()
    export = target.export
    if export not in ("so", "tar"):
        raise CosearchError(f"target {target.name!r} has export={export!r}; accepted: 'so', 'tar'")
    if latency is None and latency_note is None:
        latency_note = "not measured"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        from cosearch.compile.deploy.measure import export_library

        try:
            lib = export_library(executable, tmp, export=export, cc=target.cc)
        except CosearchError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. a missing (cross) compiler
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
            raise CosearchError(
                f"exporting the compiled model as model.{export} for target {target.name!r} "
                f"failed: {lines[-1][:300]}"
            ) from None
        onnx.save(imported.onnx_model, str(tmp / ONNX))
        meta = {
            "schema": SCHEMA,
            "library": lib.name,
            "target": target.to_dict(),
            "target_identity": target.identity(),
            "versions": package_versions(),
            "built_on": {"machine": platform.machine(), "system": platform.system()},
            "inputs": [{"name": n, "shape": [int(s) for s in shape], "dtype": str(dt)} for n, shape, dt in imported.inputs],
            "outputs": _onnx_outputs(imported.onnx_model),
            "tasks": [_task_dict(t) for t in tasks],
            "latency_ms": latency.to_dict() if latency is not None else None,
            # what `cosearch run` applies: the thread count the measurement found fastest
            "runtime": _runtime_block(latency, target),
            "tuning": _tuning_block(tuning, imported),
            "config": config,
        }
        if latency is None:
            meta["latency_note"] = latency_note
        if extra_meta:  # e.g. "accuracy" of a trained artifact
            clash = set(extra_meta) & set(meta)
            if clash:
                raise CosearchError(f"extra_meta keys {sorted(clash)} clash with the artifact's own")
            meta.update(extra_meta)
        _write_json(tmp / CONFIG, config)
        _write_json(tmp / META, meta)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _swap_into_place(tmp: Path, out: Path) -> None:
    """rename(tmp -> out); an existing (empty or artifact) ``out`` is moved aside first."""
    if out.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        aside.rmdir()
        os.rename(out, aside)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(aside, out)  # put the old artifact back
            raise
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.rename(tmp, out)
    os.chmod(out, 0o755 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


# --------------------------------------------------------------------------- read
@dataclass(frozen=True)
class Artifact:
    path: Path
    meta: dict[str, Any]
    library: Path
    onnx_path: Path
    module: Any = None  # tvm.runtime.Module once loaded

    @property
    def inputs(self) -> list[tuple[str, tuple[int, ...], str]]:
        return [(i["name"], tuple(i["shape"]), i["dtype"]) for i in self.meta["inputs"]]

    @property
    def target(self) -> dict[str, Any]:
        return self.meta["target"]

    def runtime(self):
        """``RuntimeSettings`` to run the model with: the artifact's ``runtime`` block; for
        artifacts written before it, the target's thread count (or num-cores); else ``None``."""
        from cosearch.compile.deploy.threads import RuntimeSettings

        block = self.meta.get("runtime")
        if block:
            try:
                return RuntimeSettings.from_dict(block)
            except CosearchError as e:
                raise CosearchError(f"artifact {str(self.path)!r} has bad runtime settings: {e}") from None
        threads = self.target.get("threads") or (self.target.get("target") or {}).get("num-cores")
        return RuntimeSettings(threads) if isinstance(threads, int) and not isinstance(threads, bool) and threads > 0 else None


def read_artifact(path: str | os.PathLike) -> Artifact:
    """Validate ``path`` as an artifact and read its meta (no TVM import)."""
    p = Path(path)
    if not p.is_dir():
        raise CosearchError(f"artifact {str(p)!r} is not a directory; expected the --out DIR of 'cosearch tune'")
    meta_path = p / META
    if not meta_path.is_file():
        raise CosearchError(f"{str(p)!r} is not a cosearch artifact: no {META} (expected the --out DIR of 'cosearch tune')")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise CosearchError(f"{str(meta_path)!r} is not readable JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        got = meta.get("schema") if isinstance(meta, dict) else type(meta).__name__
        raise CosearchError(f"{str(meta_path)!r} has schema {got!r}; accepted: {SCHEMA!r}")
    missing = [k for k in ("library", "target", "inputs", "outputs", "tasks") if k not in meta]
    if missing:
        raise CosearchError(f"{str(meta_path)!r} lacks {', '.join(missing)}")
    lib = p / meta["library"]
    if meta["library"] not in LIBRARIES or not lib.is_file():
        raise CosearchError(f"artifact {str(p)!r} lacks its compiled library {meta['library']!r}")
    onnx_path = p / ONNX
    if not onnx_path.is_file():
        raise CosearchError(f"artifact {str(p)!r} lacks {ONNX}")
    return Artifact(p, meta, lib, onnx_path)


def why_not_runnable_here(art: Artifact) -> str | None:
    """``None`` if this machine's CPU runtime can load and run the artifact, else the
    reason: a cross (.tar) or device artifact, another architecture, or ISA features
    (recorded ``target_identity``) this CPU lacks. Never loads the library."""
    t = art.target.get("target", {}) if isinstance(art.target.get("target"), dict) else {}
    kind = t.get("kind", "llvm")
    name = art.target.get("name", "?")
    if art.library.suffix == ".tar":
        return (f"artifact {str(art.path)!r} holds {art.library.name} (objects for cross target {name!r}); "
                "it cannot run here -- link and run it on the device (or tune with measure via rpc)")
    if kind != "llvm":
        return (f"artifact {str(art.path)!r} was compiled for {kind!r} (target {name!r}); "
                "only CPU (llvm) artifacts run here")
    triple = str(t.get("mtriple", "") or "")
    arch = triple.split("-", 1)[0]
    here = platform.machine().lower()
    same = {"x86_64": {"x86_64", "amd64"}, "amd64": {"x86_64", "amd64"}, "aarch64": {"aarch64", "arm64"},
            "arm64": {"aarch64", "arm64"}}
    if arch and arch.lower() not in same.get(here, {here}):
        return f"artifact {str(art.path)!r} targets {triple!r} (target {name!r}); this machine is {here}"
    identity = _recorded_identity(art)
    if identity is not None:
        from cosearch.compile.target import features_run_here

        ok, why = features_run_here(identity)
        if not ok:
            return (f"artifact {str(art.path)!r} was compiled for {identity.get('mcpu') or identity.get('arch')!r} "
                    f"(target {name!r}) and cannot run here: {why}")
    return None


def _recorded_identity(art: Artifact) -> dict[str, Any] | None:
    """``meta["target_identity"]``; for artifacts written before it was recorded, the
    identity of the recorded target dict (``None`` if TVM cannot resolve it)."""
    ident = art.meta.get("target_identity")
    if isinstance(ident, dict):
        return ident
    t = art.target.get("target")
    if not isinstance(t, dict) or t.get("kind") != "llvm":
        return None
    from cosearch.compile.target import identity_of

    try:
        return identity_of(t)
    except Exception:  # noqa: BLE001 - e.g. an mcpu this LLVM does not know: no feature check
        return None


def load_artifact(path: str | os.PathLike) -> Artifact:
    """Read the meta and load the compiled library with the plain runtime
    (``tvm.runtime.load_module``; run it with ``relax.VirtualMachine``)."""
    art = read_artifact(path)
    reason = why_not_runnable_here(art)
    if reason:
        raise CosearchError(reason)
    import tvm

    try:
        module = tvm.runtime.load_module(str(art.library))
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign library
        first = first_line(e)
        raise CosearchError(f"cannot load {str(art.library)!r}: {first}") from None
    return dataclasses.replace(art, module=module)


__all__ = [
    "SCHEMA", "Artifact", "check_out_dir", "is_artifact_dir", "load_artifact", "package_versions",
    "read_artifact", "why_not_runnable_here", "write_artifact",
]
