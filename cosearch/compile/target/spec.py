"""Named compilation targets: one JSON file per target in ``targets/``.

A name is looked up in ``$COSEARCH_TARGETS_DIR``, then the user targets folder
(``~/.config/cosearch/targets``), then the built-in ones (``cosearch.paths``);
a path to a ``.json`` file is read as is.

A target file is what TVM already understands (a target dict, plus a host dict
for device targets) wrapped with how cosearch measures and exports for it::

    {
      "description": "...",
      "target": {"kind": "llvm", "mcpu": "native", "num-cores": "auto"},
      "host": null,                      # host target dict for device targets (cuda)
      "measure": "local" | "rpc" | "none",
      "rpc": {"tracker_host": ..., "tracker_port": ..., "key": ...,
              "session_timeout_s": 60, "connect_timeout_s": 10},   # iff measure == "rpc"
      "threads": null,                   # runtime threads (null: per model, the fastest of 1, half
                                         # and all num-cores, timed end to end; deploy/threads.py)
      "export": "so" | "tar" | "auto",   # auto: "so" if `cc` is on PATH, else "tar"
      "cc": null                         # cross compiler for .so on foreign ISAs
    }

Resolution at load time: ``"mcpu": "native"`` becomes the LLVM host CPU name,
``"num-cores": "auto"`` becomes ``os.cpu_count()``, ``${VAR}`` / ``${VAR:-default}``
in rpc string fields are substituted from the environment. ``TargetSpec.to_dict()``
is the resolved form that runs write next to their results.

``TargetSpec.identity()`` is what the generated code depends on (kind, arch,
mcpu, ISA features, cores); ``machine_key()`` names it on disk (schedule
databases are kept per machine key, artifacts record the identity).

Every field is validated at the edge: a bad file raises ``CosearchError`` naming
the file, the field, the bad value and what is accepted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosearch.errors import CosearchError, first_line

if TYPE_CHECKING:
    import tvm

MEASURE_KINDS = ("local", "rpc", "none")
EXPORT_KINDS = ("so", "tar", "auto")
_FILE_KEYS = ("description", "target", "host", "measure", "rpc", "threads", "export", "cc")
_RPC_KEYS = ("tracker_host", "tracker_port", "key", "session_timeout_s", "connect_timeout_s")
# ISA feature prefixes that decide whether code for a target can run on a CPU
# (LLVM also lists tuning flags such as "slow-3ops-lea", which do not matter).
# x86 first, then AArch64.
_ISA_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "bmi", "amx", "vnni", "popcnt", "lzcnt", "movbe",
                 "neon", "sve", "sme", "dotprod", "i8mm", "bf16", "fullfp16", "fp16fml", "fp-armv8")
# Identity fields that make schedules / code for one target wrong for another.
IDENTITY_MUST_MATCH = ("kind", "arch", "mcpu", "features", "host")


@dataclass(frozen=True)
class RPCSettings:
    tracker_host: str
    tracker_port: int
    key: str
    session_timeout_s: float = 60
    connect_timeout_s: float = 10


@dataclass(frozen=True)
class TargetSpec:
    name: str  # file stem
    path: Path
    description: str
    target: dict  # TVM target JSON dict (resolved)
    host: dict | None  # host target dict for device targets
    measure: str  # "local" | "rpc" | "none"
    rpc: RPCSettings | None  # set iff measure == "rpc"
    threads: int | None  # runtime threads (None = chosen per model by measuring, see deploy/threads.py)
    export: str  # "so" | "tar"
    cc: str | None  # cross compiler for .so; None = host compiler
    # where the file was found: "env" ($COSEARCH_TARGETS_DIR), "user", "built-in" or "file" (a path)
    origin: str = field(default="file", compare=False)

    @property
    def kind(self) -> str:
        return str(self.target["kind"])

    @property
    def num_cores(self) -> int:
        return int(self.target.get("num-cores") or os.cpu_count() or 1)

    def tvm_target(self) -> "tvm.target.Target":
        from tvm.target import Target

        return Target(self.target, host=self.host) if self.host else Target(self.target)

    def identity(self) -> dict[str, Any]:
        """What code and schedules for this target depend on, as JSON::

            {"kind": "llvm", "arch": "x86_64", "mtriple": ..., "mcpu": "znver3",
             "features": [ISA features, sorted], "num-cores": 2, "host": null}

        (device targets: ``{"kind": "cuda", "arch": "sm_90", ..., "host": <llvm identity>}``).
        Cached per target dict: TVM is asked once per process."""
        return identity_of(self.target, self.host)

    def machine_key(self) -> str:
        """Filesystem-safe, readable and unique per identity, e.g.
        ``host--znver3-2c-1a2b3c4d`` (name, mcpu or arch, cores, hash of the identity).
        A target whose dict does not depend on the host (a fixed mcpu, fixed or equal
        core count) has the same key on every machine."""
        ident = self.identity()
        mcpu = ident.get("mcpu")
        parts = [str(mcpu if mcpu and mcpu != "generic" else ident.get("arch") or ident["kind"])]
        if ident.get("num-cores"):
            parts.append(f"{ident['num-cores']}c")
        parts.append(identity_hash(ident))
        return _safe(self.name) + "--" + _safe("-".join(parts))

    def runs_here(self) -> tuple[bool, str]:
        """Can code for this target execute on this machine's CPU? (ok, reason)."""
        if self.kind != "llvm":
            return False, f"kind {self.kind!r} is not a CPU target"
        return features_run_here(self.identity())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "description": self.description,
            "target": self.target,
            "host": self.host,
            "measure": self.measure,
            "rpc": None if self.rpc is None else dict(self.rpc.__dict__),
            "threads": self.threads,
            "export": self.export,
            "cc": self.cc,
        }


# -- identity --------------------------------------------------------------------------------


def _canon(d: dict) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=64)
def _identity_json(target_json: str, host_json: str | None) -> str:
    t = json.loads(target_json)
    ident: dict[str, Any] = {"kind": str(t["kind"])}
    if t["kind"] == "llvm":
        from tvm.target import Target, codegen

        triple = str(t.get("mtriple") or codegen.llvm_get_system_triple())
        feats = codegen.llvm_get_cpu_features(Target(t))
        ident.update({
            "arch": triple.split("-")[0],
            "mtriple": triple,
            "mcpu": str(t.get("mcpu") or "generic"),
            "features": sorted(str(f) for f in feats if str(f).startswith(_ISA_PREFIXES)),
            "num-cores": t.get("num-cores"),
        })
    else:
        ident["arch"] = t.get("arch")
    ident["host"] = None if host_json is None else json.loads(_identity_json(host_json, None))
    return json.dumps(ident, sort_keys=True)


def identity_of(target: dict, host: dict | None = None) -> dict[str, Any]:
    """The identity (see ``TargetSpec.identity``) of a resolved TVM target dict."""
    return json.loads(_identity_json(_canon(target), None if host is None else _canon(host)))


def identity_hash(identity: dict[str, Any]) -> str:
    """8 hex digits over the identity fields that matter (not the triple's vendor/OS)."""
    keep = {k: identity.get(k) for k in (*IDENTITY_MUST_MATCH, "num-cores")}
    return hashlib.sha256(_canon(keep).encode()).hexdigest()[:8]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "target"


@functools.lru_cache(maxsize=1)
def host_cpu() -> tuple[str, str, frozenset[str]]:
    """(LLVM arch, LLVM CPU name, ISA features) of this machine's CPU (cached)."""
    from tvm.target import Target, codegen

    triple = str(codegen.llvm_get_system_triple())
    cpu = str(codegen.llvm_get_system_cpu())
    feats = codegen.llvm_get_cpu_features(Target({"kind": "llvm", "mcpu": cpu}))
    return triple.split("-")[0], cpu, frozenset(str(f) for f in feats if str(f).startswith(_ISA_PREFIXES))


_SAME_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}


def features_run_here(identity: dict[str, Any]) -> tuple[bool, str]:
    """Does this CPU have the arch and every ISA feature ``identity`` (an llvm
    identity, e.g. recorded in an artifact) needs? (ok, reason)."""
    arch, cpu, have = host_cpu()
    want_arch = str(identity.get("arch") or arch)
    if _SAME_ARCH.get(want_arch.lower(), want_arch.lower()) != _SAME_ARCH.get(arch.lower(), arch.lower()):
        return False, f"code for {want_arch} cannot run on this {arch} CPU ({cpu!r})"
    missing = sorted(set(identity.get("features") or ()) - have)
    if missing:
        return False, f"host CPU {cpu!r} lacks {', '.join(missing)}"
    return True, f"host CPU {cpu!r} has every ISA feature"


# -- lookup ----------------------------------------------------------------------------------


def _names(d: Path) -> list[str]:
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


def find_target_file(name: str) -> tuple[Path, str] | None:
    """(path, origin) of the first ``name.json`` on the search path, or ``None``."""
    from cosearch.paths import target_search_path

    for origin, d in target_search_path():
        p = d / f"{name}.json"
        if p.is_file():
            return p, origin
    return None


def list_targets() -> list[TargetSpec]:
    """Every target name on the search path, once (the first folder holding it wins)."""
    from cosearch.paths import target_search_path

    seen: dict[str, TargetSpec] = {}
    for origin, d in target_search_path():
        for n in _names(d):
            if n not in seen:
                seen[n] = _parse(d / f"{n}.json", origin)
    return [seen[n] for n in sorted(seen)]


def load_target(name_or_path: str) -> TargetSpec:
    """A name on the target search path (``cosearch.paths``) or a path to a ``.json`` file."""
    text = str(name_or_path)
    looks_like_path = text.endswith(".json") or os.sep in text or "/" in text
    if looks_like_path:
        path = Path(text).expanduser()
        if not path.is_file():
            raise CosearchError(f"target file {text!r} does not exist; give a target name or a path to a .json file")
        return _parse(path, "file")
    found = find_target_file(text)
    if found is None:
        from cosearch.paths import target_search_path

        search = target_search_path()
        names = sorted({n for _, d in search for n in _names(d)})
        raise CosearchError(
            f"unknown target {text!r}; valid targets: {', '.join(names) or '(none)'} "
            f"(searched {', '.join(str(d) for _, d in search)}), or a path to a .json target file"
        )
    return _parse(*found)


# -- parsing ---------------------------------------------------------------------------------


def _parse(path: Path, origin: str = "file") -> TargetSpec:
    where = str(path)

    def bad(field: str, value: Any, accepted: str) -> CosearchError:
        return CosearchError(f"target file {where}: field {field!r} has bad value {value!r}; accepted: {accepted}")

    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise CosearchError(f"target file {where}: cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise CosearchError(f"target file {where}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from e
    if not isinstance(raw, dict):
        raise CosearchError(f"target file {where}: expected a JSON object with keys {', '.join(_FILE_KEYS)}, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_FILE_KEYS))
    if unknown:
        raise CosearchError(f"target file {where}: unknown field(s) {', '.join(unknown)}; accepted fields: {', '.join(_FILE_KEYS)}")

    description = raw.get("description", "")
    if not isinstance(description, str):
        raise bad("description", description, "a string")

    target = raw.get("target")
    if not isinstance(target, dict) or not isinstance(target.get("kind"), str):
        raise bad("target", target, 'a TVM target dict with a "kind", e.g. {"kind": "llvm", "num-cores": 2}')
    host = raw.get("host")
    if host is not None and (not isinstance(host, dict) or not isinstance(host.get("kind"), str)):
        raise bad("host", host, 'null or a TVM target dict such as {"kind": "llvm"}')
    target = _resolve_target_dict(target, lambda v, acc, f="target": bad(f, v, acc))
    if host is not None:
        host = _resolve_target_dict(host, lambda v, acc: bad("host", v, acc))

    measure = raw.get("measure", "local")
    if measure not in MEASURE_KINDS:
        raise bad("measure", measure, ", ".join(MEASURE_KINDS))

    rpc_raw = raw.get("rpc")
    rpc = None
    if measure == "rpc":
        if not isinstance(rpc_raw, dict):
            raise bad("rpc", rpc_raw, f"an object with {', '.join(_RPC_KEYS[:3])} (required when measure is 'rpc')")
        rpc = _parse_rpc(rpc_raw, bad)
    elif rpc_raw is not None:
        raise bad("rpc", rpc_raw, "null unless measure is 'rpc'")

    threads = raw.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads <= 0):
        raise bad("threads", threads, "null or a positive integer")

    cc = raw.get("cc")
    if cc is not None and (not isinstance(cc, str) or not cc):
        raise bad("cc", cc, "null or a compiler command such as 'aarch64-linux-gnu-g++'")
    export = raw.get("export", "so")
    if export not in EXPORT_KINDS:
        raise bad("export", export, ", ".join(EXPORT_KINDS))
    if export == "auto":
        export = "so" if (cc is None or shutil.which(cc)) else "tar"

    # Last: let TVM itself reject what it does not know (unknown options, kinds).
    try:
        from tvm.target import Target

        Target(target, host=host) if host else Target(target)
    except Exception as e:  # TVM raises ValueError / TVMError with its own message
        msg = first_line(e)
        raise bad("target", raw.get("target"), f"a dict TVM accepts ({msg})") from e

    return TargetSpec(
        name=path.stem,
        path=path.resolve(),
        description=description,
        target=target,
        host=host,
        measure=measure,
        rpc=rpc,
        threads=threads,
        export=export,
        cc=cc,
        origin=origin,
    )


def _resolve_target_dict(d: dict, bad) -> dict:
    out = dict(d)
    if out["kind"] == "llvm" and out.get("mcpu") == "native":
        from tvm.target import codegen

        out["mcpu"] = str(codegen.llvm_get_system_cpu())
    cores = out.get("num-cores")
    if cores == "auto":
        out["num-cores"] = os.cpu_count() or 1
    elif cores is not None and (isinstance(cores, bool) or not isinstance(cores, int) or cores <= 0):
        raise bad(d, '"num-cores": a positive integer or "auto"')
    if out["kind"] == "llvm" and isinstance(out.get("mcpu"), str):
        from tvm.target import codegen

        triple = out.get("mtriple") or str(codegen.llvm_get_system_triple())
        if not codegen.llvm_is_valid_cpu(out["mcpu"], triple):
            raise bad(d, f'an LLVM CPU name valid for {triple} (or "native") in "mcpu"')
    return out


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _subst(value: Any, field: str, bad) -> Any:
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        var, default = m.group(1), m.group(2)
        got = os.environ.get(var)
        if got is None or got == "":
            if default is None:
                raise bad(f"rpc.{field}", value, f"a value; environment variable {var} is not set and has no default (${{{var}:-default}})")
            return default
        return got

    return _ENV.sub(one, value)


def _parse_rpc(r: dict, bad) -> RPCSettings:
    unknown = sorted(set(r) - set(_RPC_KEYS))
    if unknown:
        raise bad("rpc", r, f"fields {', '.join(_RPC_KEYS)} (unknown: {', '.join(unknown)})")
    host = _subst(r.get("tracker_host"), "tracker_host", bad)
    if not isinstance(host, str) or not host:
        raise bad("rpc.tracker_host", r.get("tracker_host"), "a host name or address")
    port = _subst(r.get("tracker_port"), "tracker_port", bad)
    try:
        port_i = int(port) if not isinstance(port, bool) else -1
    except (TypeError, ValueError):
        port_i = -1
    if not 0 < port_i < 65536:
        raise bad("rpc.tracker_port", r.get("tracker_port"), "an integer port 1..65535")
    key = _subst(r.get("key"), "key", bad)
    if not isinstance(key, str) or not key:
        raise bad("rpc.key", r.get("key"), "a non-empty device key registered with the tracker")
    out = {}
    for f in ("session_timeout_s", "connect_timeout_s"):
        v = r.get(f, RPCSettings.__dataclass_fields__[f].default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise bad(f"rpc.{f}", v, "a positive number of seconds")
        out[f] = float(v)
    return RPCSettings(tracker_host=host, tracker_port=port_i, key=key, **out)
