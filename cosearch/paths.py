"""Where cosearch finds targets and keeps schedule databases, in a source
checkout and in an installed package alike. No heavy imports here.

Targets (a name given to ``--target``), first match wins:

1. ``$COSEARCH_TARGETS_DIR`` (if set);
2. the user targets folder: ``$XDG_CONFIG_HOME/cosearch/targets``
   (default ``~/.config/cosearch/targets``);
3. the built-in targets: ``<checkout>/targets/`` in a source checkout, else
   the copy shipped inside the package (``cosearch/_targets/``, mapped from the
   top-level ``targets/`` at build time, see ``setup.py``).

Schedule databases (``cosearch tune`` without ``--schedules``):
``default_schedules_root() / target.machine_key()`` where the root is

1. ``$COSEARCH_SCHEDULES`` (if set);
2. ``<checkout>/schedules/`` in a writable source checkout;
3. the user data folder: ``$XDG_DATA_HOME/cosearch/schedules``
   (default ``~/.local/share/cosearch/schedules``).

An installed package never writes under ``site-packages``.
"""

from __future__ import annotations

import functools
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Protocol

    class HasMachineKey(Protocol):  # a TargetSpec (cosearch.compile.target)
        def machine_key(self) -> str: ...

TARGETS_ENV = "COSEARCH_TARGETS_DIR"
SCHEDULES_ENV = "COSEARCH_SCHEDULES"


def _package_dir() -> Path:
    return Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def source_checkout() -> Path | None:
    """The repository root when cosearch is imported from a source checkout
    (``<root>/pyproject.toml`` names the project ``cosearch`` and ``<root>/cosearch``
    is this package), else ``None`` (an installed wheel)."""
    root = _package_dir().parent
    try:
        with open(root / "pyproject.toml", "rb") as fh:
            name = tomllib.load(fh).get("project", {}).get("name")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return root if name == "cosearch" else None


def _xdg(var: str, default: str) -> Path:
    # XDG base-directory spec: a relative value is invalid and must be ignored.
    v = os.environ.get(var)
    return Path(v) if v and os.path.isabs(v) else Path.home() / default


def user_config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "cosearch"


def user_data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "cosearch"


# -- targets ---------------------------------------------------------------------------------


def builtin_targets_dir() -> Path:
    """``<checkout>/targets`` in a source checkout, else the packaged copy."""
    root = source_checkout()
    if root is not None and (root / "targets").is_dir():
        return root / "targets"
    return _package_dir() / "_targets"


def user_targets_dir() -> Path:
    return user_config_dir() / "targets"


def target_search_path() -> list[tuple[str, Path]]:
    """``[(origin, folder), ...]`` searched in order for a target name; origin is
    ``"env"`` ($COSEARCH_TARGETS_DIR), ``"user"`` or ``"built-in"``."""
    out: list[tuple[str, Path]] = []
    env = os.environ.get(TARGETS_ENV)
    if env:
        out.append(("env", Path(env).expanduser()))
    out.append(("user", user_targets_dir()))
    out.append(("built-in", builtin_targets_dir()))
    return out


# -- schedules -------------------------------------------------------------------------------


def _writable(d: Path) -> bool:
    from cosearch.fsio import creatable

    return creatable(d)[0]


def default_schedules_root() -> Path:
    """Folder holding one schedule database per machine key (see module doc)."""
    env = os.environ.get(SCHEDULES_ENV)
    if env:
        return Path(env).expanduser()
    root = source_checkout()
    if root is not None and _writable(root / "schedules"):
        return root / "schedules"
    return user_data_dir() / "schedules"


def default_schedules_dir(target: "HasMachineKey") -> Path:
    """``default_schedules_root() / target.machine_key()``: schedules tuned for one
    target identity (ISA, CPU, cores) never mix with another's."""
    return default_schedules_root() / target.machine_key()


__all__ = [
    "SCHEDULES_ENV", "TARGETS_ENV", "builtin_targets_dir", "default_schedules_dir", "default_schedules_root",
    "source_checkout", "target_search_path", "user_config_dir", "user_data_dir", "user_targets_dir",
]
