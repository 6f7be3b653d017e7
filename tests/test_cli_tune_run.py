"""`cosearch tune` / `cosearch run` end to end in subprocesses (real TVM), and
every bad input: exit 2, one stderr line, no traceback, nothing written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module")
def artifact(tiny_onnx, tmp_path_factory, host_tuned):
    """`cosearch tune` in a subprocess on a copy of the in-process-tuned DB: every
    task comes from the DB (a fresh subprocess would pay ~20-160 s importing
    tensor_intrin to tune; tuning itself is covered in-process and via RPC)."""

    root = tmp_path_factory.mktemp("cli")
    out, db = root / "art", root / "db"
    shutil.copytree(host_tuned["db"], db)
    r = run_cli("tune", tiny_onnx, "--target", "host", "--out", out, "--trials", "4", "--trials-per-task", "2",
                "--schedules", db, "--seed", "1", "--repeat", "5", "--layout", "NCHW")
    assert r.returncode == 0, r.stderr[-3000:]
    return out, db, r


def test_tune_then_run(artifact):
    out, db, r = artifact
    assert "tasks:" in r.stdout and "trials run:" in r.stdout and "latency: median" in r.stdout
    meta = json.loads((out / "meta.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg == meta["config"] and cfg["seed"] == 1 and cfg["tune"]["trials"] == 4
    assert cfg["tune"]["trials_per_task"] == 2 and cfg["target"]["name"] == "host"
    assert cfg["schedules"] == str(db) and cfg["model"]["kind"] == "onnx"
    assert cfg["tune"]["max_seconds"] is None and cfg["model"]["layout"] == "NCHW"
    assert meta["latency_ms"]["n"] == 5
    sources = {t["source"] for t in meta["tasks"]}
    assert "db" in sources and "untuned" not in sources, meta["tasks"]
    assert any(t["best_us"] for t in meta["tasks"] if t["source"] == "db")

    r2 = run_cli("run", out, "--repeat", "5")
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "max abs error" in r2.stdout and "OK" in r2.stdout and "n=5" in r2.stdout
    err = float(r2.stdout.split("max abs error ")[1].split()[0])
    assert err < 1e-4
    # the thread count the tune measured fastest is recorded and applied; --threads overrides it
    rt = meta["runtime"]
    assert rt["threads"] == meta["latency_ms"]["threads"] and str(rt["threads"]) in meta["latency_ms"]["by_threads"]
    assert f"threads={rt['threads']} ({rt['affinity']})" in r2.stdout
    r3 = run_cli("run", out, "--repeat", "3", "--threads", "1", "--affinity", "pinned")
    assert r3.returncode == 0 and "threads=1 (pinned)" in r3.stdout, r3.stdout + r3.stderr[-2000:]


def test_tune_for_a_time_in_a_layout(tiny_onnx, tmp_path):
    """``--time``: real tuning bounded by the clock with the long search settings; ``--layout``:
    the conv layout at import, recorded in the run config; the artifact still runs correctly."""
    from cosearch.compile.storage import history

    out, db = tmp_path / "art", tmp_path / "db"
    r = run_cli("tune", tiny_onnx, "--target", "host", "--out", out, "--schedules", db, "--time", "15s",
                "--layout", "NCHW8c", "--repeat", "3", timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["layout"] == "NCHW8c"
    assert cfg["tune"]["max_seconds"] == 15 and cfg["tune"]["cost_model"] == "xgb" and cfg["tune"]["population"] == 256
    assert cfg["tune"]["patience"] is None and cfg["early_stop"] == {"kind": "never"}  # no --patience: the clock ends it
    meta = json.loads((out / "meta.json").read_text())
    assert meta["tuning"]["trials_run"] > 0
    # 15 s for the tiny net's tasks is under 20 s per task: the cheap search ran, and the artifact says so
    assert meta["tuning"]["search"] == {"population": 64, "genetic_iters": 1, "cost_model": "random", "wide_min_us": 100.0}
    assert any(e["event"] == "stop" and e["rule"] == {"kind": "deadline"} for e in history.read(db))
    r2 = run_cli("run", out, "--repeat", "3")
    assert r2.returncode == 0 and "OK" in r2.stdout, r2.stderr[-3000:]


def test_run_with_given_input(artifact, tmp_path):
    out, _, _ = artifact
    x = np.random.default_rng(7).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = run_cli("run", out, "--input", tmp_path / "x.npy", "--repeat", "3")
    assert r.returncode == 0 and "max abs error" in r.stdout, r.stderr[-2000:]
    np.save(tmp_path / "bad.npy", x[:, :, :8])
    assert_one_line_error(run_cli("run", out, "--input", tmp_path / "bad.npy"), "shape (1, 3, 8, 16)", "(1, 3, 16, 16)")


def test_run_fails_above_tolerance_with_tampered_reference(artifact, tmp_path):
    import onnx
    from onnx import numpy_helper

    out, _, _ = artifact
    copy = tmp_path / "art"
    shutil.copytree(out, copy)
    m = onnx.load(str(copy / "model.onnx"))
    for i, init in enumerate(m.graph.initializer):
        if init.name == "b2":  # shift the last conv's bias: the reference output moves
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + 0.5, "b2"))
    onnx.save(m, str(copy / "model.onnx"))
    r = run_cli("run", copy, "--repeat", "3")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "MISMATCH" in r.stdout and "Traceback" not in r.stderr


@pytest.mark.skipif(shutil.which("nvcc") is None,
                    reason="nvcc not on PATH: compiling for cuda-sm90 needs the CUDA compiler "
                    "(tests/test_tune.py checks the one-line error without it)")
def test_tune_space_arch_compile_only_then_run_refuses(tmp_path):
    """SPACE:ARCH through the CLI on the compile-only cuda-sm90 target (no tuning,
    nothing to run here): artifact written with null latency; `run` exits 2."""
    arch = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    out = tmp_path / "nb"
    r = run_cli("tune", f"nb201:{arch}", "--target", "cuda-sm90", "--out", out, "--schedules", tmp_path / "db")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "compile-only" in r.stdout
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"]["model"]["kind"] == "space" and meta["config"]["model"]["arch"] == arch
    assert meta["inputs"][0]["shape"] == [1, 3, 32, 32] and meta["outputs"][0]["shape"] == [1, 10]
    assert meta["latency_ms"] is None and "compile-only" in meta["latency_note"]
    assert meta["tasks"] and all(t["trials"] == 0 and t["source"] != "tuned" for t in meta["tasks"])
    assert meta["target_identity"] == {"kind": "cuda", "arch": "sm_90", "host": meta["target_identity"]["host"]}
    lib = (out / "model.so").read_bytes()
    assert meta["library"] == "model.so" and lib[:4] == b"\x7fELF" and b"__global__" in lib  # CUDA kernels inside
    assert_one_line_error(run_cli("run", out), "cuda", "only CPU (llvm) artifacts run here")


# -- bad inputs: exit 2, one line, no traceback, nothing written ---------------------------


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "garbage.onnx").write_bytes(b"\x00\x01 this is not a protobuf \xff" * 10)
    (tmp_path / "adir.onnx").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    "case, needles",
    [
        ("unknown_target", ["unknown target 'no-such-target'", "host", "x86-64-avx2", "rpc-loopback"]),
        ("missing_file", ["does not exist"]),
        ("dir_as_model", ["is a directory"]),
        ("malformed_onnx", ["garbage.onnx", "ONNX"]),
        ("trials_zero", ["--trials must be an integer >= 1, got 0"]),
        ("trials_text", ["--trials must be an integer >= 1, got 'many'"]),
        ("per_task_negative", ["--trials-per-task must be an integer >= 1, got -3"]),
        ("bad_space_arch", ["nb201"]),
        ("unknown_space", ["unknown space 'nope'"]),
        ("bad_time", ["--time must be a duration such as 90s, 30m or 1.5h, got 'soon'"]),
        ("bad_layout", ["--layout must be auto or one of NCHW, NHWC, NCHW8c, NCHW16c, got 'NCWH'"]),
    ],
)
def test_tune_bad_input(case, needles, bad_files, tiny_onnx):
    d = bad_files
    model, target, extra = str(tiny_onnx), "host", []
    if case == "unknown_target":
        target = "no-such-target"
    elif case == "missing_file":
        model = str(d / "missing.onnx")
    elif case == "dir_as_model":
        model = str(d / "adir.onnx")
    elif case == "malformed_onnx":
        model = str(d / "garbage.onnx")
    elif case == "trials_zero":
        extra = ["--trials", "0"]
    elif case == "trials_text":
        extra = ["--trials", "many"]
    elif case == "per_task_negative":
        extra = ["--trials-per-task", "-3"]
    elif case == "bad_space_arch":
        model = "nb201:|bogus~0|"
    elif case == "unknown_space":
        model = "nope:abc"
    elif case == "bad_time":
        extra = ["--time", "soon"]
    elif case == "bad_layout":
        extra = ["--layout", "NCWH"]
    out, db = d / "out", d / "db"
    r = run_cli("tune", model, "--target", target, "--out", out, "--schedules", db, *extra, timeout=120)
    assert_one_line_error(r, *needles)
    assert not out.exists() and not db.exists()


def test_tune_refuses_foreign_out_dir_untouched(tiny_onnx, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "paper.tex").write_text("precious")
    r = run_cli("tune", tiny_onnx, "--target", "host", "--out", out, "--schedules", tmp_path / "db")
    assert_one_line_error(r, str(out), "paper.tex", "not a cosearch artifact")
    assert [p.name for p in out.iterdir()] == ["paper.tex"] and (out / "paper.tex").read_text() == "precious"
    assert not (tmp_path / "db").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_run_bad_inputs(tmp_path, artifact):
    assert_one_line_error(run_cli("run", tmp_path / "nothing"), "not a directory")
    assert_one_line_error(run_cli("run", tmp_path), "not a cosearch artifact")
    assert_one_line_error(run_cli("run", artifact[0], "--repeat", "0"), "--repeat must be an integer >= 1")
    assert_one_line_error(run_cli("run", artifact[0], "--tolerance", "-1"), "--tolerance")
    assert_one_line_error(run_cli("run", artifact[0], "--threads", "0"), "--threads must be an integer >= 1")
    assert_one_line_error(run_cli("run", artifact[0], "--input", tmp_path / "no.npy"), "does not exist")
