"""A schedule database is bound to the target identity it was tuned for.

``<database>/target.json`` (written once, atomically, by the first tuning run
into the folder; never rewritten)::

    {
      "schema": "cosearch.schedules-target/1",
      "name": "host",                          # target name at creation (informative)
      "machine_key": "host--znver3-2c-3afece49",
      "identity": {"kind": "llvm", "arch": "x86_64", "mcpu": "znver3",
                   "features": [...], "num-cores": 2, "host": null, ...},
      "created": "2026-11-29T14:30:00+00:00",
      "tvm": "0.27.0.post1"
    }

``bind_database`` refuses (``CosearchError``) to tune or compile with a folder
bound to another kind / arch / mcpu / ISA feature set -- its schedules were
measured on another CPU and may use instructions this one lacks -- unless
``accept_foreign=True``, which warns (``ForeignSchedulesWarning``) instead. A
different core count only warns (the schedules run, they were tiled for other
parallelism). A folder from before this file existed is bound on first use.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosearch.errors import CosearchError

if TYPE_CHECKING:
    from cosearch.compile.target import TargetSpec

TARGET_FILE = "target.json"
SCHEMA = "cosearch.schedules-target/1"
_MAX_SHOWN = 6


class ForeignSchedulesWarning(UserWarning):
    """A schedule database tuned for another target identity is used anyway."""


def describe_identity(ident: dict[str, Any]) -> str:
    """``llvm x86_64 znver3 2 cores`` (one line, no feature list)."""
    parts = [str(ident.get("kind")), str(ident.get("arch") or "")]
    if ident.get("mcpu"):
        parts.append(str(ident["mcpu"]))
    if ident.get("num-cores"):
        parts.append(f"{ident['num-cores']} cores")
    if ident.get("host"):
        parts.append(f"host {describe_identity(ident['host'])}")
    return " ".join(p for p in parts if p)


def identity_differences(bound: dict[str, Any], mine: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(mismatches that make schedules foreign, soft differences), each a short phrase."""
    from cosearch.compile.target import IDENTITY_MUST_MATCH

    hard: list[str] = []
    for k in IDENTITY_MUST_MATCH:
        a, b = bound.get(k), mine.get(k)
        if a == b:
            continue
        if k == "features":
            extra = sorted(set(a or ()) - set(b or ()))
            lacking = sorted(set(b or ()) - set(a or ()))
            bits = []
            if extra:
                bits.append("database has " + ", ".join(extra[:_MAX_SHOWN]) + (" ..." if len(extra) > _MAX_SHOWN else ""))
            if lacking:
                bits.append("this target has " + ", ".join(lacking[:_MAX_SHOWN]) + (" ..." if len(lacking) > _MAX_SHOWN else ""))
            hard.append("ISA features differ (" + "; ".join(bits) + ")")
        elif k == "host":
            hard.append(f"host {describe_identity(a or {}) or None} vs {describe_identity(b or {}) or None}")
        else:
            hard.append(f"{k} {a!r} vs {b!r}")
    soft = []
    if bound.get("num-cores") != mine.get("num-cores"):
        soft.append(f"num-cores {bound.get('num-cores')!r} vs {mine.get('num-cores')!r}")
    return hard, soft


def read_binding(database_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed ``target.json`` of a database folder, ``None`` if there is none."""
    path = Path(database_dir) / TARGET_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise CosearchError(f"schedule database binding {str(path)!r} is unreadable ({e}); "
                            "delete it to bind the folder to the next target tuned into it") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("identity"), dict):
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise CosearchError(f"schedule database binding {str(path)!r} has schema {got!r}; accepted: {SCHEMA!r}")
    return data


def _binding_for(target: "TargetSpec") -> dict[str, Any]:
    try:
        tvm_version = metadata.version("apache-tvm")
    except metadata.PackageNotFoundError:
        tvm_version = None
    return {
        "schema": SCHEMA,
        "name": target.name,
        "machine_key": target.machine_key(),
        "identity": target.identity(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tvm": tvm_version,
    }


def _create_exclusive(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` only if it does not exist: temp file, fsync, hard
    link into place (atomic, fails if another process won). True if we wrote it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True
    finally:
        os.unlink(tmp)


def bind_database(database_dir: str | os.PathLike, target: "TargetSpec", *, accept_foreign: bool = False) -> None:
    """Bind ``database_dir`` to ``target``'s identity on first use; afterwards refuse
    (one-line ``CosearchError``) a target whose kind / arch / mcpu / ISA features
    differ, unless ``accept_foreign`` (then a ``ForeignSchedulesWarning``).
    Creates ``database_dir`` if missing."""
    d = Path(database_dir)
    mine = _binding_for(target)
    bound = read_binding(d)
    if bound is None:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CosearchError(f"schedule database {str(d)!r} cannot be created: {e.strerror or e}") from None
        if _create_exclusive(d / TARGET_FILE, json.dumps(mine, indent=2) + "\n"):
            return
        bound = read_binding(d)  # another process bound it first: check against theirs
        if bound is None:
            raise CosearchError(f"schedule database binding {str(d / TARGET_FILE)!r} vanished while binding; retry")
    hard, soft = identity_differences(bound["identity"], mine["identity"])
    theirs = f"{describe_identity(bound['identity'])} (target {bound.get('name')!r}, key {bound.get('machine_key')})"
    ours = f"{describe_identity(mine['identity'])} (target {target.name!r}, key {mine['machine_key']})"
    if hard:
        msg = (f"schedule database {str(d)!r} was tuned for {theirs}, not for {ours}: {'; '.join(hard)}")
        if not accept_foreign:
            raise CosearchError(msg + "; use another --schedules folder (the default is per machine key) "
                                "or pass --accept-foreign-schedules to use it anyway")
        warnings.warn(msg + "; used anyway (accept_foreign)", ForeignSchedulesWarning, stacklevel=2)
    elif soft:
        warnings.warn(f"schedule database {str(d)!r} was tuned for {theirs}; this is {ours}: {'; '.join(soft)} "
                      "(schedules still run, tiled for another core count)", ForeignSchedulesWarning, stacklevel=2)


__all__ = ["SCHEMA", "TARGET_FILE", "ForeignSchedulesWarning", "bind_database", "describe_identity",
           "identity_differences", "read_binding"]
