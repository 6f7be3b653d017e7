"""RPC with a REAL tracker + server on loopback (``LocalRPC``): bounded
failures, measurement through RPC, and tuning through an rpc-loopback-like
target file pointing at the chosen port (via the CLI)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from conftest import assert_one_line_error, run_cli, write_target_file
from cosearch.compile.deploy.rpc import LocalRPC, check_key, connect, free_port, probe_tracker, request_session
from cosearch.compile.target import RPCSettings
from cosearch.errors import CosearchError

pytestmark = pytest.mark.tvm


def test_tracker_magic_matches_tvm():
    from tvm.rpc import base

    from cosearch.compile.deploy import rpc

    assert rpc._TRACKER_MAGIC == base.RPC_TRACKER_MAGIC


def test_unreachable_tracker_fails_within_bound():
    port = free_port()
    s = RPCSettings("127.0.0.1", port, "k", connect_timeout_s=1.5)
    t0 = time.monotonic()
    with pytest.raises(CosearchError) as e:
        connect(s)
    took = time.monotonic() - t0
    assert 1.0 <= took < 10, took  # retried a refused connection, but not for the stock 60 s
    assert f"RPC tracker 127.0.0.1:{port} unreachable after 1.5 s" in str(e.value)


def test_silent_peer_is_not_a_tracker_and_does_not_hang():
    with socket.socket() as srv:  # accepts connections (backlog) but never answers
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(CosearchError, match="unreachable after 2 s"):
            probe_tracker("127.0.0.1", port, 2.0)
        assert time.monotonic() - t0 < 10


@pytest.fixture(scope="module")
def local_rpc():
    rpc = LocalRPC(key="cosearch-test", port=0)
    with rpc as settings:
        yield rpc, settings
    # torn down: the port no longer answers
    with pytest.raises(CosearchError):
        probe_tracker(settings.tracker_host, settings.tracker_port, 0.5)


def test_local_rpc_registers_and_reports(local_rpc):
    rpc, s = local_rpc
    assert s.tracker_host == "127.0.0.1" and s.tracker_port > 0 and s.key == "cosearch-test"
    assert rpc.startup_seconds is not None and rpc.startup_seconds > 0
    check_key(s)  # registered
    with pytest.raises(CosearchError, match="registered keys: cosearch-test"):
        check_key(RPCSettings(s.tracker_host, s.tracker_port, "no-such-device"))
    remote = request_session(s)
    assert remote.cpu().exist


@pytest.fixture(scope="module")
def rpc_tuned(local_rpc, tiny_onnx, tmp_path_factory):
    """Tune the tiny net IN-PROCESS through the loopback tracker (RPCRunner) into a fresh DB."""
    import dataclasses

    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.compile.pipeline import tune_and_compile

    _, s = local_rpc
    target = dataclasses.replace(load_target("rpc-loopback"), rpc=s)
    imported = from_onnx(tiny_onnx)
    db = tmp_path_factory.mktemp("rpc-schedules")
    result = tune_and_compile(imported, target, database_dir=db, config=TuneConfig(trials=4, trials_per_iter=4, seed=0))
    return target, imported, result, db


def test_tune_and_measure_through_rpc(local_rpc, rpc_tuned):
    import dataclasses

    from cosearch.compile.deploy.measure import MeasureConfig, measure

    _, s = local_rpc
    target, imported, result, _ = rpc_tuned
    tuned = [t for t in result.tasks if t.source == "tuned"]
    assert tuned and result.trials_run > 0
    assert all(t.trials > 0 and t.best_us and t.best_us > 0 for t in tuned)
    r = measure(result.executable, dataclasses.replace(target, threads=1), imported.inputs,
                config=MeasureConfig(repeat=5))
    assert r.ok, r.error
    assert r.where == f"rpc:127.0.0.1:{s.tracker_port}/cosearch-test"
    assert r.latency.n == 5 and r.latency.threads == 1 and 0 < r.latency.p10_ms <= r.latency.median_ms


def test_cli_tune_through_rpc_loopback(local_rpc, rpc_tuned, tiny_onnx, tmp_path):
    """The CLI with an rpc-loopback-like target file pointing at the test tracker;
    schedules come from the RPC-tuned DB (a copy), measurement goes through RPC."""
    import shutil

    _, s = local_rpc
    db = tmp_path / "db"
    shutil.copytree(rpc_tuned[3], db)
    tfile = write_target_file(
        tmp_path / "loop.json", "rpc-loopback",
        rpc={"tracker_host": s.tracker_host, "tracker_port": s.tracker_port, "key": s.key, "session_timeout_s": 60},
    )
    out = tmp_path / "art"
    r = run_cli("tune", tiny_onnx, "--target", tfile, "--out", out, "--trials", "4", "--schedules", db,
                "--repeat", "5")
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["target"]["measure"] == "rpc" and meta["target"]["rpc"]["tracker_port"] == s.tracker_port
    assert any(t["source"] == "db" for t in meta["tasks"])
    assert meta["latency_ms"]["n"] == 5 and meta["latency_ms"]["median"] > 0
    assert "latency: median" in r.stdout


def test_cli_unreachable_tracker_is_bounded(tiny_onnx, tmp_path):
    port = free_port()
    tfile = write_target_file(
        tmp_path / "dead.json", "rpc-loopback",
        rpc={"tracker_host": "127.0.0.1", "tracker_port": port, "key": "x", "connect_timeout_s": 3},
    )
    t0 = time.monotonic()
    r = run_cli("tune", tiny_onnx, "--target", tfile, "--out", tmp_path / "out", "--schedules", tmp_path / "db",
                timeout=60)
    took = time.monotonic() - t0
    assert_one_line_error(r, f"RPC tracker 127.0.0.1:{port} unreachable after 3 s")
    assert took < 30, took
    assert not (tmp_path / "out").exists() and not (tmp_path / "db").exists()


def test_local_rpc_fixed_busy_port_is_an_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(CosearchError, match=f"cannot start an RPC tracker on 127.0.0.1:{port}"):
            with LocalRPC(key="busy", port=port):
                pass
        assert time.monotonic() - t0 < 60


def test_local_rpc_rejects_bad_arguments():
    with pytest.raises(CosearchError, match="RPC key"):
        LocalRPC(key="has space")
    with pytest.raises(CosearchError, match="port must be"):
        LocalRPC(port=70000)


def test_remote_failure_is_data(local_rpc, tmp_path):
    """A library the device cannot load: a MeasureResult with an error, not a crash."""
    from cosearch.compile.deploy.measure import measure_rpc

    _, s = local_rpc
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"not an ELF file")
    r = measure_rpc(None, [("x", (1, 3, 16, 16), "float32")], s, library_path=junk)
    assert not r.ok and r.latency is None and r.error and "\n" not in r.error
    assert r.where.startswith("rpc:127.0.0.1:")


@pytest.mark.tvm
def test_two_boards_one_session_each_and_tuning_measures_on_both(tiny_onnx, tmp_path):
    """A loopback tracker with two servers (boards): the tracker leases each session a free
    board and never a busy one (two sessions at once, a third waits); the tuning runner runs as
    many measurements at once as there are boards, and a tuning call through them writes records."""
    import dataclasses

    from cosearch.compile.deploy.rpc import boards
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.pipeline import tune_and_compile
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.compile.tuning.runner import make_runner

    with LocalRPC(key="cosearch-two", port=0, servers=2, session_timeout_s=60) as s:
        assert boards(s) == 2
        a, b = request_session(s), request_session(s)
        assert a.cpu().exist and b.cpu().exist
        with pytest.raises(CosearchError, match="no free RPC device"):
            request_session(s, wait_s=2)
        del a, b
        target = dataclasses.replace(load_target("rpc-loopback"), rpc=s)
        runner = make_runner(target, TuneConfig())
        assert runner.retries >= 1  # a failed measurement goes to another board (tests/test_distributed.py)
        assert runner.inner.pool._threadpool._max_workers == 2  # noqa: SLF001 - MetaSchedule exposes no count
        del runner
        result = tune_and_compile(from_onnx(tiny_onnx), target, database_dir=tmp_path / "db",
                                  config=TuneConfig(trials=8, trials_per_iter=8, seed=0, patience=None))
    assert result.trials_run >= 4 and any(t.source == "tuned" for t in result.tasks)


@pytest.mark.parametrize("fault", ["hang", "reboot"])
def test_a_hung_or_rebooted_board_is_cut_off_and_its_candidate_measured_on_another(fault, tiny_onnx, tmp_path):
    """Two loopback boards, one of them faulty. "hang": stopped (SIGSTOP), it accepts the
    connection and never answers; MetaSchedule's own session timeout never fires there (its timer
    needs the GIL the native RPC call holds), so the session is ended by ``tuning.retry``'s alarm.
    "reboot": the board dies (SIGKILL, server and session process) in the middle of a measurement,
    which fails at once. Either way the candidate is measured again on the other board (the retry
    counted), nothing is recorded as failed, and the call writes records."""
    import dataclasses
    import os
    import signal
    import threading

    import psutil

    from cosearch.compile import engine
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig

    timeout_s = 20
    rpc = LocalRPC(key=f"cosearch-{fault}", port=0, servers=2, session_timeout_s=timeout_s)
    with rpc as s:
        bad = rpc._server.proc._proc.pid  # noqa: SLF001 - the first board's server process

        def reboot_mid_measurement() -> None:  # a session process that has lived 0.2 s is measuring
            first: dict[int, float] = {}
            for _ in range(6000):
                now = time.monotonic()
                kids = psutil.Process(bad).children(recursive=True)
                for c in kids:
                    first.setdefault(c.pid, now)
                if any(now - first[c.pid] >= 0.2 for c in kids):
                    for c in kids:
                        c.kill()
                    os.kill(bad, signal.SIGKILL)
                    return
                time.sleep(0.01)

        if fault == "hang":
            os.kill(bad, signal.SIGSTOP)
        else:
            threading.Thread(target=reboot_mid_measurement, daemon=True).start()
        try:
            target = dataclasses.replace(load_target("rpc-loopback"), rpc=s)
            t0 = time.monotonic()
            # measurements of ~0.5 s (number x repeat), so the reboot lands inside one
            out = engine.tune_tasks(engine.plan(from_onnx(tiny_onnx), target).tasks, target,
                                    database_dir=tmp_path / "db", trials=8,
                                    config=TuneConfig(trials=8, trials_per_iter=8, seed=0, patience=None,
                                                      transfer=False, number=10000, repeat=5))
            took = time.monotonic() - t0
        finally:
            try:
                os.kill(bad, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert out.measure is not None and out.measure["retried"] >= 1, out.measure
    assert out.measure["failed"] == 0, out.measure
    assert out.trials_run >= 4 and out.records_written >= 1
    if fault == "hang":  # cut off at the session timeout
        assert took >= timeout_s, took
    else:  # the measurement failed when the board died, before any timeout
        assert took < timeout_s, took
