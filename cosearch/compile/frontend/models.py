"""Models by name: an .onnx file or ``SPACE:ARCH`` of a search space, imported."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosearch.errors import CosearchError

if TYPE_CHECKING:
    from cosearch.compile.frontend.importer import ImportedModel


def import_arch(space, arch: str, *, seed: int | None = 0, layout: str | None = None) -> "ImportedModel":
    """Build ``arch`` of ``space`` (seeded weights) and import it (conv ``layout``: see
    ``cosearch.compile.frontend.layout``; None: the default)."""
    import torch

    from cosearch.compile.frontend import from_torch

    if seed is not None:
        torch.manual_seed(seed)
    module = space.build(arch, seed=seed).eval()
    gen = torch.Generator().manual_seed(0 if seed is None else seed)
    example = torch.randn(tuple(space.input_shape(arch)), generator=gen)
    return from_torch(module, (example,), layout=layout)


def model_kind(text: str) -> str:
    """'onnx' or 'space' for a MODEL argument; a missing .onnx file is an error here (before any work)."""
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


def load_model(text: str, *, seed: int | None = 0, layout: str | None = None) -> tuple["ImportedModel", dict[str, Any]]:
    """MODEL (an .onnx path or SPACE:ARCH) -> (ImportedModel, description for the run config).
    ``layout``: the conv data layout at import (``cosearch.compile.frontend.layout``; None: the default)."""
    from cosearch.compile.frontend import from_onnx

    if model_kind(text) == "onnx":
        imported = from_onnx(text, layout=layout)
        # layout: the conv data layout in effect ("auto" resolved), part of every workload key
        return imported, {"kind": "onnx", "path": str(Path(text).resolve()), "layout": imported.layout}
    from cosearch.space import parse_model_spec

    space, arch = parse_model_spec(text)
    shape = tuple(space.input_shape(arch))
    imported = import_arch(space, arch, seed=seed, layout=layout)
    return imported, {"kind": "space", "spec": text, "space": space.config(), "arch": arch,
                      "input_shape": list(shape), "layout": imported.layout}
