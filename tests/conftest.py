"""Shared fixtures: tiny ONNX models (built with onnx.helper, no torch), a
temp copy of a target file pointing at a chosen RPC port, subprocess CLI runs.

Keep fixtures here small and cheap; heavy ones (tuning) are module-scoped in
the test files that need them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # bench/ modules the tests share (bench.zoo, bench.latency_model)
    sys.path.insert(0, str(REPO))


def make_tiny_conv_onnx(path: Path | None = None, *, seed: int = 0, size: int = 16, channels: int = 8):
    """conv3x3(3->C)+relu -> conv3x3 s2(C->C)+relu -> global avg pool -> flatten.
    Input ``x``: (1, 3, size, size) float32; output ``y``: (1, C). Returns the ModelProto
    (and saves it to ``path`` when given)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def init(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)

    c = channels
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c])],
        [init("w1", (c, 3, 3, 3)), init("b1", (c,)), init("w2", (c, c, 3, 3)), init("b2", (c,))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, str(path))
    return model


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """Path to the tiny conv net as ``.onnx`` (shared, read-only)."""
    p = tmp_path_factory.mktemp("models") / "tiny_conv.onnx"
    make_tiny_conv_onnx(p)
    return p


def write_target_file(path: Path, base: str, **overrides) -> Path:
    """Copy ``targets/<base>.json`` to ``path`` with top-level fields replaced
    (e.g. ``rpc={...}`` to point at a test tracker)."""
    raw = json.loads((REPO / "targets" / f"{base}.json").read_text())
    raw.update(overrides)
    path.write_text(json.dumps(raw))
    return path


def run_cli(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m cosearch ARGS`` in a subprocess (text output, never raises on exit code)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "cosearch", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=str(REPO),
    )


def kill_when(cmd: list[str], ready, *, env: dict | None = None, timeout: float = 120) -> None:
    """Start ``cmd``, poll ``ready()`` every 50 ms until it is true (or ``timeout``), then
    SIGKILL the process and reap it (a kill -9 of a real run, for resume tests)."""
    import signal
    import time

    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and not ready():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def assert_one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, a single non-empty stderr line containing every needle, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="session")
def host_tuned(tiny_onnx, tmp_path_factory):
    """The tiny conv net tuned IN-PROCESS on ``host`` (few real trials) into a
    session schedule DB. Tuning pays MetaSchedule's ``tensor_intrin`` import
    once per process, so CLI tests reuse this DB (copy it) instead of tuning
    again in a subprocess. Returns a dict: target, imported, result, config, db."""
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.compile.pipeline import tune_and_compile

    target = load_target("host")
    imported = from_onnx(tiny_onnx)
    db = tmp_path_factory.mktemp("host-schedules")
    cfg = TuneConfig(trials=6, trials_per_iter=4, seed=0)
    result = tune_and_compile(imported, target, database_dir=db, config=cfg)
    return {"target": target, "imported": imported, "result": result, "config": cfg, "db": db}
