"""A real tune killed with SIGKILL keeps every finished batch; the next run continues from them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cosearch.compile.storage import history
from cosearch.compile.storage.database import RECORD_FILE, open_database

from conftest import REPO

pytestmark = pytest.mark.tvm


def _batches(db: Path) -> list[dict]:
    return [e for e in history.read(db) if e["event"] == "batch"]


def test_kill_9_mid_tune_keeps_finished_batches_and_resume_continues(tiny_onnx, tmp_path):
    db = tmp_path / "schedules"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "cosearch", "tune", str(tiny_onnx), "--target", "host", "--trials", "400",
           "--trials-per-task", "100", "--patience", "100", "--schedules", str(db), "--out", str(tmp_path / "a")]
    proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if (db / history.HISTORY_FILE).exists() and len(_batches(db)) >= 3:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "tune finished or failed before it could be killed: " + proc.stderr.read().decode()[-500:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "a" / "meta.json").exists()  # no artifact: the run did not finish

    done = _batches(db)
    assert len(done) >= 3
    # every batch the history reports is in the database: its task has a usable record
    records = [json.loads(x) for x in (db / RECORD_FILE).read_text().splitlines() if x.strip()]
    assert len(records) >= 1
    loaded = open_database(db)
    assert len(loaded.get_all_tuning_records()) >= 1
    tuned_workloads = {e["workload"] for e in done if e.get("best_us") is not None}
    spent_before = {w: h.trials for w, h in history.summarize(db).items()}
    assert sum(spent_before.values()) == sum(e["trials"] for e in done)

    # the next run continues: earlier trials are counted as prior, nothing already done is lost
    r = subprocess.run([sys.executable, "-m", "cosearch", "tune", str(tiny_onnx), "--target", "host", "--trials", "8",
                        "--schedules", str(db), "--out", str(tmp_path / "b")],
                       cwd=str(REPO), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    later = _batches(db)[len(done):]
    assert sum(e["trials"] for e in later) == 8
    all_workloads = {e["workload"] for e in history.read(db) if e["event"] == "task"}
    if all_workloads - tuned_workloads:  # killed before every task had a batch: the rest go first
        assert {e["workload"] for e in later} <= all_workloads - tuned_workloads
    else:  # everything had a batch: this run tunes further, counting the killed run's trials
        assert all(e["prior_trials"] > 0 for e in later)
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    assert all(t["source"] in ("db", "tuned") for t in meta["tasks"]), meta["tasks"]
    spent_after = {w: h.trials for w, h in history.summarize(db).items()}
    assert sum(spent_after.values()) == sum(spent_before.values()) + 8
