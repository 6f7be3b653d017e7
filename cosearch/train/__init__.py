"""Short real training: the top accuracy fidelity of the search, and trained artifacts.

* ``cosearch.train.data``: datasets (embedded ``digits``, ``.npz``, image folders),
  seeded stratified train / validation / held-out split, resized once and cached;
* ``cosearch.train.trainer``: ``train_arch`` -> ``TrainResult`` (learning curve,
  early stop);
* ``cosearch.train.predictor``: the learning-curve model and early-stop rule,
  persisted per space / dataset;
* ``cosearch.train.deploy``: ``train_artifact`` behind ``cosearch train`` (train,
  recompile with the schedule database without tuning, held-out accuracy through
  the compiled TVM module).

Heavy imports (torch, xgboost, TVM) happen inside functions.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "Data": "cosearch.train.data", "prepare_data": "cosearch.train.data", "split": "cosearch.train.data",
    "DEFAULT_DATASET": "cosearch.train.data",
    "TrainConfig": "cosearch.train.trainer", "TrainResult": "cosearch.train.trainer",
    "train_arch": "cosearch.train.trainer", "build_trained": "cosearch.train.trainer",
    "LearningCurvePredictor": "cosearch.train.predictor", "Decision": "cosearch.train.predictor",
    "train_artifact": "cosearch.train.deploy", "TrainedArtifact": "cosearch.train.deploy",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'cosearch.train' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)


__all__ = sorted(_LAZY)
