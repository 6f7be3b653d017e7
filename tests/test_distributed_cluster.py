"""``--ray-address``: the search joins a Ray cluster started with ``ray start --head`` (a real
head on loopback, its own processes), screens on its workers and leaves it running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cosearch.compile.deploy.rpc import free_port


@pytest.fixture
def ray_head(tmp_path):
    """A Ray head (``ray start --head --block``) on loopback with 2 CPUs; stopped afterwards by
    signalling its own process group (never ``ray stop``, which would stop every Ray on the host)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    port = free_port("127.0.0.1")
    exe = Path(sys.executable).parent / "ray"
    log = open(tmp_path / "head.log", "w")
    head = subprocess.Popen([str(exe), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "RAY_AUTH_MODE": "token"})
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in (tmp_path / "head.log").read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start --head did not come up: {(tmp_path / 'head.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield address
    finally:
        head.send_signal(signal.SIGTERM)  # the head stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # and whatever of its group is left
        except ProcessLookupError:
            pass
        head.wait(timeout=30)
        log.close()


def test_search_joins_a_cluster_started_with_ray_start(ray_head, tmp_path):
    """The head uses Ray's token authentication: the search is told so (RAY_AUTH_MODE=token),
    as a user is (docs/distributed.md); the token is the one ``ray start`` wrote."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "cosearch", "search", "--evaluator", "fake", "--estimator", "synthetic",
           "--max-archs", "8", "--lookahead", "4", "--ray-address", ray_head, "--out", str(out), "--no-progress"]
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    plans = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()
             if json.loads(line)["event"] == "plan"]
    assert len(plans) == 8 and all(p.get("worker") for p in plans)
    conf = json.loads((out / "config.json").read_text())
    assert conf["workers"] == {"kind": "ray", "workers": 2, "address": ray_head}
    # joined, not owned: the cluster is still up for the next search
    r2 = subprocess.run(cmd[:-3] + ["--out", str(tmp_path / "run2"), "--no-progress"], capture_output=True,
                        text=True, timeout=600, env=env)
    assert r2.returncode == 0, r2.stderr[-3000:]


def test_unreachable_ray_address_is_one_line_and_exit_2(tmp_path):
    port = free_port("127.0.0.1")
    r = subprocess.run([sys.executable, "-m", "cosearch", "search", "--evaluator", "fake", "--estimator", "synthetic",
                        "--max-archs", "3", "--ray-address", f"127.0.0.1:{port}", "--out", str(tmp_path / "run"),
                        "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in r.stderr and lines and "--ray-address" in lines[-1], r.stderr[-3000:]
