"""The ``onnx`` package's model-zoo "light" graphs (``onnx/backend/test/data/light``:
SqueezeNet, ShuffleNet, ResNet-50, Inception v1, DenseNet-121, ...; 1x3x224x224) with
seeded random weights: real ImageNet-size graphs, no download, for benches and tests.

The light graphs make every weight with ``ConstantOfShape`` (constant values: outputs
are uniform and would match anything), so ``randomized_light`` replaces those with
seeded random initializers of the same shapes; workloads depend on shapes and ops
only, so the kernels are those of the real networks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: the bench networks among them
LIGHT_MODELS = ("squeezenet", "shufflenet", "resnet50", "inception_v1")


def light_path(name: str) -> Path:
    """The light graph's file; ``FileNotFoundError`` when this onnx version does not ship it."""
    import onnx

    p = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"
    if not p.exists():
        raise FileNotFoundError(f"{p} is not shipped by this onnx version")
    return p


def randomized_light(name: str, seed: int = 0):
    """The light graph ``name`` with every ``ConstantOfShape(<initializer shape>)`` replaced
    by a seeded random initializer (He-scaled conv/Gemm weights, positive BatchNorm
    scale/variance) -- the same construction as tests/test_model_zoo.py."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(light_path(name)))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    uses: dict[str, tuple[str, int, dict]] = {}
    for node in g.node:
        for i, nm in enumerate(node.input):
            uses.setdefault(nm, (node.op_type, i, {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}))
    rng = np.random.default_rng(seed)
    keep, new_inits = [], []
    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input and node.input[0] in inits:
            shape = tuple(int(s) for s in numpy_helper.to_array(inits[node.input[0]]))
            op, idx, attrs = uses.get(node.output[0], ("", -1, {}))
            if op == "BatchNormalization" and idx in (1, 4):
                a = rng.uniform(0.5, 1.5, shape)
            elif op == "Conv" and idx == 1:
                a = rng.standard_normal(shape) * np.sqrt(2.0 / max(1, int(np.prod(shape[1:]))))
            elif op == "Gemm" and idx == 1:
                fan_in = shape[1] if attrs.get("transB", 0) else shape[0]
                a = rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)
            else:
                a = rng.standard_normal(shape) * 0.1
            new_inits.append(numpy_helper.from_array(a.astype(np.float32), node.output[0]))
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(new_inits)
    model.ir_version = max(model.ir_version, 4)  # IR < 4 wants every initializer as a graph input
    # initializers listed as graph inputs are overridable, so ONNX Runtime does not fold them
    # as constants (a handicap TVM, which binds them, does not have): IR >= 4 lets them go
    names = {t.name for t in g.initializer}
    real = [i for i in g.input if i.name not in names]
    del g.input[:]
    g.input.extend(real)
    return model
