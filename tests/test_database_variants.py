"""Records of kernels that share an anchor block survive a reload.

Two networks whose convolutions are identical but whose fused epilogues differ
(conv+bias, whose bias add is the kernel's output, vs conv+bias+relu, where it is
inlined) are one task class under anchor-block equality. The second tuning warm-starts from the first one's records; its own
records must be written with its *own* kernel as their workload: written with the
first kernel's (the anchor-equal workload the scratch database returns), their
traces do not replay on it and every one of them is skipped when a new process
reads the database (found in a real `cosearch search` run: 16 of 199 records).
"""

from __future__ import annotations

import warnings

import pytest

pytestmark = pytest.mark.tvm


def _net(relu: bool):
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return torch.relu(y) if relu else y

    return Net().eval()


def test_variant_records_replay_after_reload(tmp_path):
    import torch

    from cosearch.compile.storage import database as dbmod
    from cosearch.compile.frontend import from_torch
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.compile.pipeline import tune_and_compile

    target = load_target("host")
    x = torch.randn(1, 8, 12, 12)
    cfg = TuneConfig(trials=4, trials_per_iter=4, seed=0, patience=None)
    for relu in (False, True):
        tune_and_compile(from_torch(_net(relu), (x,)), target, database_dir=tmp_path, config=cfg)
    dbmod._loader.cache_clear()  # read the files as a new process would
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        db = dbmod.open_database(tmp_path, best_only=False)
    bad = [str(w.message) for w in caught if issubclass(w.category, dbmod.DatabaseWarning)]
    assert not bad, bad[:3]
    assert len(db.get_all_tuning_records()) >= 2
