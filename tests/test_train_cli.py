"""`cosearch train`: real training, recompile with the schedule database (no tuning),
held-out accuracy through the compiled TVM module equal to PyTorch's; bad input."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from cosearch.errors import CosearchError

pytestmark = pytest.mark.tvm

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
SPACE = {"C": 4, "N": 1, "resolution": 16}


def train_cli(*argv: str) -> int:
    """``cosearch train ARGV`` through the verb's own parser (as the CLI runs it): exit code."""
    from cosearch.commands import train

    p = argparse.ArgumentParser()
    train.register(p.add_subparsers(dest="command"))
    args = p.parse_args(["train", *map(str, argv)])
    try:
        return int(args.func(args) or 0)
    except CosearchError as e:
        print(f"cosearch train: error: {e}")
        return 2


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A tiny NB201 artifact tuned with a few real trials into its own database."""
    from cosearch.compile import engine
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.space import create_space

    root = tmp_path_factory.mktemp("train")
    db, out = root / "db", root / "untrained"
    space = create_space("nb201", **SPACE)
    target = load_target("host")
    from cosearch.compile.target.binding import bind_database

    bind_database(db, target)
    imported = engine.import_arch(space, ARCH, seed=0)
    plan = engine.plan(imported, target)
    outcome = engine.tune_tasks(plan.tasks, target, database_dir=db, trials=6,
                                config=TuneConfig(trials=6, trials_per_iter=2, seed=0))
    exe = engine.compile_plan(plan, db)
    config = {"command": "tune", "model": {"kind": "space", "spec": f"nb201:{ARCH}", "space": space.config(),
                                           "arch": ARCH, "input_shape": [1, 3, 16, 16]},
              "target": target.to_dict(), "schedules": str(db), "seed": 0}
    engine.write_model_artifact(out, plan, exe, db, config=config, outcome=outcome)
    meta = json.loads((out / "meta.json").read_text())
    assert any(t["source"] in ("db", "tuned") for t in meta["tasks"])
    return out, db


def test_train_recompiles_without_tuning_and_tvm_matches_torch(untrained, tmp_path):
    src, db = untrained
    hist = db / "tasks.jsonl"
    before = hist.read_text().splitlines()
    out = tmp_path / "trained"
    rc = train_cli(src, "--epochs", "1", "--limit", "400", "--batch-size", "16", "--lr", "0.1", "--out", out,
                   "--repeat", "3")
    assert rc == 0
    after = hist.read_text().splitlines()
    assert after == before  # no batch (no event at all) appended: nothing was tuned
    meta = json.loads((out / "meta.json").read_text())
    old = json.loads((src / "meta.json").read_text())
    for o, n in zip(old["tasks"], meta["tasks"], strict=True):
        assert o["name"] == n["name"]
        if o["source"] in ("db", "tuned"):
            assert n["source"] == "db", (o, n)
    assert meta["tuning"]["trials_run"] == 0
    acc = meta["accuracy"]
    assert acc["tvm_heldout"] == acc["torch_heldout"] and acc["agreement"] == 1.0
    assert acc["epochs"] == 1 and len(acc["curve"]) == 1 and acc["heldout_n"] == 60
    assert acc["dataset"]["split"]["heldout"] == 60 and acc["dataset"]["dataset"] == "digits"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["command"] == "train" and cfg["source_artifact"] == str(src.absolute())
    # the written library, loaded with the plain runtime, gives the recorded held-out accuracy
    # and logits close to PyTorch's trained network
    from cosearch.compile.deploy.artifact import load_artifact
    from cosearch.train.data import prepare_data
    from cosearch.train.deploy import tvm_accuracy

    art = load_artifact(out)
    d = prepare_data("digits", (1, 3, 16, 16), 10, seed=0, limit=400)
    a, pred = tvm_accuracy(art.module, d.x_heldout.numpy(), d.y_heldout.numpy(), 1)
    assert a == acc["tvm_heldout"]
    assert len(set(pred.tolist())) > 1  # not a constant classifier (the equality above is not vacuous)


def test_check_no_retune_fails_loudly():
    from cosearch.train.deploy import check_no_retune

    before = [{"name": "conv", "source": "tuned"}, {"name": "pool", "source": "untuned"}]
    check_no_retune(before, [{"name": "conv", "source": "db"}, {"name": "pool", "source": "untuned"}])
    with pytest.raises(CosearchError, match="not in it for the trained network"):
        check_no_retune(before, [{"name": "conv", "source": "untuned"}, {"name": "pool", "source": "untuned"}])
    with pytest.raises(CosearchError, match="other tasks"):
        check_no_retune(before, [{"name": "conv", "source": "db"}])


@pytest.mark.parametrize("case, needle", [
    ("epochs0", "--epochs must be an integer >= 1, got 0"),
    ("missing_data", "does not exist"),
    ("malformed_npz", "is not a readable .npz"),
    ("class_mismatch", "has 10 outputs"),
    ("channels", "takes 3 channels"),
    ("not_artifact", "not a cosearch artifact"),
    ("space_needs_target", "needs --target"),
])
def test_train_bad_input_exit2_nothing_written(untrained, tmp_path, capsys, case, needle):
    src, _ = untrained
    out = tmp_path / "out"
    data = "digits"
    model = str(src)
    extra: list[str] = []
    if case == "epochs0":
        extra = ["--epochs", "0"]
    elif case == "missing_data":
        data = str(tmp_path / "none.npz")
    elif case == "malformed_npz":
        data = str(tmp_path / "bad.npz")
        Path(data).write_bytes(b"PK\x03\x04 garbage")
    elif case == "class_mismatch":
        data = str(tmp_path / "c.npz")
        np.savez(data, x=np.random.default_rng(0).random((40, 8, 8)).astype(np.float32), y=np.arange(40) % 12)
    elif case == "channels":
        data = str(tmp_path / "c.npz")
        np.savez(data, x=np.random.default_rng(0).random((40, 2, 8, 8)).astype(np.float32), y=np.arange(40) % 10)
    elif case == "not_artifact":
        model = str(tmp_path / "empty")
        Path(model).mkdir()
    elif case == "space_needs_target":
        model = f"nb201:{ARCH}"
    rc = train_cli(model, "--data", data, "--out", out, *extra)
    msg = capsys.readouterr().out.strip().splitlines()
    assert rc == 2 and len(msg) == 1 and needle in msg[0], msg
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
