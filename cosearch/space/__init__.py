"""Search spaces, registered by name.

A user's own space: subclass ``SearchSpace``, then either
``SPACES.register("mine", MySpace)`` in code, or expose it to the CLI with the
``COSEARCH_PLUGINS`` environment variable (comma-separated modules imported at
start-up, each registering its spaces/estimators). See ``docs/spaces.md``.
A space that lists its decisions (``SearchSpace.decisions``) is searched by
NSGA-II over them; one that does not, by seeded ``sample`` draws.
"""

from __future__ import annotations

from typing import Any

from cosearch.errors import CosearchError
from cosearch.registry import Registry
from cosearch.space.base import Decision, SearchSpace

SPACES: Registry[type[SearchSpace]] = Registry("space")
SPACES.register("nb201", "cosearch.space.nb201:NB201Space")
SPACES.register("mbv2", "cosearch.space.mbv2:MBV2Space")


def create_space(name: str, /, **settings: Any) -> SearchSpace:
    return SPACES.create(name, **settings)


def parse_model_spec(text: str, **settings: Any) -> tuple[SearchSpace, str]:
    """``"SPACE:ARCH"`` -> (space, canonical arch). Raises ``CosearchError``."""
    name, sep, arch = text.partition(":")
    if not sep or not arch:
        raise CosearchError(f"expected SPACE:ARCH (spaces: {', '.join(SPACES.names())}), got {text!r}")
    space = create_space(name, **settings)
    return space, space.canonical(arch)


__all__ = ["SPACES", "Decision", "SearchSpace", "create_space", "parse_model_spec"]
