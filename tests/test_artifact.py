"""Artifacts and local measurement with real TVM: tune a tiny conv net on
``host`` (few trials, temp schedule DB), write, load back with the plain
runtime, compare with ONNX Runtime; out_dir rules; cross-target (.tar)
artifacts; measurement failures as data."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cosearch.compile.deploy.artifact import (
    SCHEMA,
    check_out_dir,
    is_artifact_dir,
    load_artifact,
    read_artifact,
    why_not_runnable_here,
    write_artifact,
)
from cosearch.compile.deploy.measure import Latency, MeasureConfig, measure, measure_local
from cosearch.compile.deploy.threads import candidates
from cosearch.errors import CosearchError

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module")
def tuned(host_tuned):
    target, imported, result = host_tuned["target"], host_tuned["imported"], host_tuned["result"]
    lat = measure(result.executable, target, imported.inputs, config=MeasureConfig(repeat=10)).unwrap()
    return target, imported, result, lat, host_tuned["config"]


def _write(tmp_path, tuned, name="art", **kw):
    target, imported, result, lat, cfg = tuned
    return write_artifact(
        tmp_path / name, executable=result.executable, target=target, imported=imported, tasks=result.tasks,
        latency=lat, config={"seed": 0, "tune": cfg.to_dict()},
        tuning={"trials_run": result.trials_run, "seconds": result.seconds}, **kw,
    )


def test_roundtrip_matches_onnxruntime_and_meta_complete(tmp_path, tuned, tiny_onnx):
    import onnxruntime as ort
    import tvm
    from tvm import relax

    target, imported, result, lat, _ = tuned
    assert result.trials_run > 0 and any(t.source == "tuned" for t in result.tasks)
    out = _write(tmp_path, tuned)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "meta.json", "model.onnx", "model.so"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp dirs left behind"

    art = load_artifact(out)
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)
    vm = relax.VirtualMachine(art.module, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    ref = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.shape == ref.shape == (1, 8)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-4)

    meta = json.loads((out / "meta.json").read_text())
    assert meta["schema"] == SCHEMA and meta["library"] == "model.so"
    assert meta["target"]["name"] == "host" and meta["target"]["target"]["kind"] == "llvm"
    assert set(meta["versions"]) >= {"tvm", "tvm_ffi", "torch", "onnx", "cosearch"}
    assert meta["versions"]["tvm"].startswith("0.27")
    assert meta["inputs"] == [{"name": "x", "shape": [1, 3, 16, 16], "dtype": "float32"}]
    assert meta["outputs"] == [{"name": "y", "shape": [1, 8], "dtype": "float32"}]
    assert len(meta["tasks"]) == len(result.tasks) > 0
    for t in meta["tasks"]:
        assert set(t) >= {"name", "source", "trials", "best_us"} and t["source"] in ("db", "tuned", "untuned")
    assert meta["latency_ms"] == {"median": lat.median_ms, "p10": lat.p10_ms, "p90": lat.p90_ms, "n": 10,
                                  "threads": lat.threads, "affinity": "shared",
                                  "by_threads": {str(t): ms for t, ms in lat.by_threads.items()}}
    # the host target leaves threads to the measurement: every count timed, the fastest kept and recorded
    assert set(lat.by_threads) == set(candidates(target.num_cores))
    assert lat.threads == min(lat.by_threads, key=lat.by_threads.get) and lat.median_ms == lat.by_threads[lat.threads]
    assert meta["runtime"] == {"threads": lat.threads, "affinity": "shared"}
    assert 0 < lat.p10_ms <= lat.median_ms <= lat.p90_ms
    assert meta["tuning"]["trials_run"] == result.trials_run and "seconds" in meta["tuning"]
    assert meta["config"] == json.loads((out / "config.json").read_text()) == {"seed": 0, "tune": tuned[4].to_dict()}


def test_replaces_previous_artifact_atomically(tmp_path, tuned):
    out = _write(tmp_path, tuned)
    (out / "stale.txt").write_text("from the old artifact")
    assert is_artifact_dir(out)
    _write(tmp_path, tuned)  # replace
    assert not (out / "stale.txt").exists() and is_artifact_dir(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no aside/temp dirs left
    with pytest.raises(CosearchError, match="overwrite is off"):
        _write(tmp_path, tuned, overwrite_artifact=False)


def test_refuses_foreign_dir_and_writes_nothing(tmp_path, tuned):
    foreign = tmp_path / "art"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CosearchError) as e:
        _write(tmp_path, tuned)
    msg = str(e.value)
    assert "notes.txt" in msg and str(foreign) in msg and "\n" not in msg
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert (foreign / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CosearchError, match="is a file"):
        check_out_dir(f)
    # an empty directory is fine
    (tmp_path / "empty").mkdir()
    assert is_artifact_dir(_write(tmp_path, tuned, name="empty"))


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(CosearchError, match="not a directory"):
        read_artifact(tmp_path / "missing")
    with pytest.raises(CosearchError, match="no meta.json"):
        read_artifact(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"schema": "something-else/3"}))
    with pytest.raises(CosearchError, match="schema 'something-else/3'"):
        read_artifact(tmp_path)
    (tmp_path / "meta.json").write_text("{torn")
    with pytest.raises(CosearchError, match="not readable JSON"):
        read_artifact(tmp_path)


AARCH64_E_MACHINE = 183  # ELF e_machine of EM_AARCH64 (x86-64 is 62)


def _elf_machine(head: bytes) -> int | None:
    """e_machine of a little-endian ELF header, None if ``head`` is not ELF."""
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[5] != 1:
        return None
    return int.from_bytes(head[18:20], "little")


def test_cross_target_writes_aarch64_code_and_is_not_runnable_here(tmp_path, tuned):
    import tarfile

    import tvm

    from cosearch.compile.target import load_target

    _, imported, result, _, _ = tuned
    arm = load_target("aarch64-linux")
    ex = tvm.compile(imported.mod, target=arm.tvm_target())
    out = write_artifact(tmp_path / "arm", executable=ex, target=arm, imported=imported, tasks=[],
                         latency=None, latency_note="cross target, not measured", config={})
    meta = json.loads((out / "meta.json").read_text())
    assert meta["latency_ms"] is None and meta["latency_note"] == "cross target, not measured"
    assert meta["target_identity"]["arch"] == "aarch64" and "neon" in meta["target_identity"]["features"]
    lib = out / meta["library"]
    assert lib.is_file() and lib.name == f"model.{arm.export}"
    # what the library holds really is AArch64 machine code
    if lib.suffix == ".tar":
        with tarfile.open(lib) as tar:
            objs = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".o")]
            machines = {m.name: _elf_machine(tar.extractfile(m).read(64)) for m in objs}
        assert objs and set(machines.values()) == {AARCH64_E_MACHINE}, machines
    else:  # a cross compiler was found: a shared object
        assert _elf_machine(lib.read_bytes()[:64]) == AARCH64_E_MACHINE
    reason = why_not_runnable_here(read_artifact(out))
    assert reason is not None and ("aarch64" in reason or ".tar" in reason)
    with pytest.raises(CosearchError):
        load_artifact(out)
    from conftest import assert_one_line_error, run_cli

    assert_one_line_error(run_cli("run", out), "cannot run here")


def test_host_artifact_records_identity_and_its_code_is_host_elf(tmp_path, tuned):
    target = tuned[0]
    out = _write(tmp_path, tuned)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["target_identity"] == target.identity() and meta["target_identity"]["features"]
    assert _elf_machine((out / "model.so").read_bytes()[:64]) not in (None, AARCH64_E_MACHINE)
    assert why_not_runnable_here(read_artifact(out)) is None


def _claim_features(art_dir, extra):
    meta = json.loads((art_dir / "meta.json").read_text())
    meta["target_identity"]["features"] = sorted(set(meta["target_identity"]["features"]) | set(extra))
    (art_dir / "meta.json").write_text(json.dumps(meta))


def test_run_refuses_artifact_needing_isa_this_cpu_lacks_before_loading(tmp_path, tuned):
    """meta.json says the code needs an ISA feature this CPU lacks: `cosearch run` exits 2
    in one line naming it -- before loading the library (here garbage, so loading it
    would give another error)."""
    from conftest import assert_one_line_error, run_cli

    from cosearch.compile.target import host_cpu

    _, cpu, have = host_cpu()
    lacking = sorted({"avx512f", "avx512vnni", "amx-tile", "sve2"} - have)[:1] or ["no-such-isa-feature"]
    out = _write(tmp_path, tuned)
    _claim_features(out, lacking + ["made-up-isa-feature"])
    (out / "model.so").write_bytes(b"not a shared object")
    reason = why_not_runnable_here(read_artifact(out))
    assert reason and lacking[0] in reason and "made-up-isa-feature" in reason and cpu in reason
    with pytest.raises(CosearchError, match="cannot run here"):
        load_artifact(out)
    assert_one_line_error(run_cli("run", out), "cannot run here", lacking[0], "made-up-isa-feature")


def test_artifact_without_recorded_identity_is_checked_from_its_target(tmp_path, tuned):
    """Artifacts written before target_identity was recorded: the identity is derived
    from the recorded target dict (mcpu), so the ISA check still applies."""
    from cosearch.compile.target import host_cpu

    out = _write(tmp_path, tuned)
    meta = json.loads((out / "meta.json").read_text())
    del meta["target_identity"]
    (out / "meta.json").write_text(json.dumps(meta))
    assert why_not_runnable_here(read_artifact(out)) is None
    other = "skylake-avx512" if "avx512f" not in host_cpu()[2] else "x86-64"  # x86-64: lacks nothing extra
    meta["target"]["target"]["mcpu"] = other
    (out / "meta.json").write_text(json.dumps(meta))
    reason = why_not_runnable_here(read_artifact(out))
    if other == "skylake-avx512":
        assert reason and "avx512f" in reason
    else:
        assert reason is None


def test_measurement_failure_is_data(tuned):
    _, imported, result, _, _ = tuned
    wrong = [("x", (1, 3, 8, 8), "float32")]  # the model wants 16x16
    r = measure_local(result.executable, wrong, threads=1, config=MeasureConfig(repeat=3))
    assert not r.ok and r.latency is None and r.error and "\n" not in r.error
    with pytest.raises(CosearchError, match="measurement .* failed"):
        r.unwrap()


def test_compile_only_target_is_refused_by_measure(tuned):
    from cosearch.compile.target import load_target

    _, imported, result, _, _ = tuned
    with pytest.raises(CosearchError, match="compile-only"):
        measure(result.executable, load_target("cuda-sm90"), imported.inputs)


def test_latency_statistics_and_config_validation():
    lat = Latency.from_samples([5.0, 1.0, 2.0, 3.0, 4.0], threads=2)
    assert (lat.median_ms, lat.n, lat.threads) == (3.0, 5, 2)
    assert lat.p10_ms == pytest.approx(1.4) and lat.p90_ms == pytest.approx(4.6)
    for bad in ({"repeat": 0}, {"warmup": -1}, {"min_repeat_ms": -1.0}):
        with pytest.raises(CosearchError):
            MeasureConfig(**bad)


def test_check_out_dir_unwritable_parent(tmp_path):
    if os.geteuid() == 0:  # root writes everywhere: check the message path with a file as parent instead
        (tmp_path / "f").write_text("x")
        with pytest.raises(CosearchError):
            check_out_dir(tmp_path / "f" / "sub")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(CosearchError, match="not writable"):
            check_out_dir(ro / "out")


def test_export_failure_is_clear_and_leaves_nothing(tmp_path, tuned):
    import dataclasses

    target, imported, result, _, _ = tuned
    bad = dataclasses.replace(target, cc="no-such-cross-g++")
    with pytest.raises(CosearchError, match="exporting the compiled model as model.so .* failed"):
        write_artifact(tmp_path / "art", executable=result.executable, target=bad, imported=imported,
                       tasks=result.tasks, config={})
    assert list(tmp_path.iterdir()) == []
