"""Import: torch / ONNX -> a lowered, fused Relax module ready for task extraction
(``importer``), the conv data layout chosen at import (``layout``), the numpy-level op
tables both use (``ops``), and models by name (``models``: an .onnx file or SPACE:ARCH)."""

from cosearch.compile.frontend.importer import (
    ImportedModel,
    extract_tasks,
    from_onnx,
    from_torch,
    torch_to_onnx,
)

__all__ = ["ImportedModel", "extract_tasks", "from_onnx", "from_torch", "torch_to_onnx"]
