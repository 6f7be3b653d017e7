"""The ``train`` estimator: short real training, the top accuracy fidelity.

``TrainEstimator(epochs=5, data="digits", ...)`` trains each architecture
(``cosearch.train.trainer.train_arch``) and scores it with its validation accuracy
after the last epoch (absolute: it depends on the architecture, settings and seed
only). Fidelity ``"train:E"``; a run stopped early by the learning-curve rule has
fidelity ``"train:E:stopped-at-K"`` and scores the predictor's estimate of its final
accuracy when there is one, else its last validation accuracy.

``estimate(space, arch, stop_threshold=t)`` passes the accuracy the architecture
needs to enter the front to the early-stop rule; ``predictor`` is shared across
calls (persisted per space / dataset, see ``cosearch.train.predictor``) unless
``persist=False``. ``last_result`` keeps the last ``TrainResult`` (weights
included) for a caller that wants to export it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from cosearch.estimate.base import Estimate, Estimator

if TYPE_CHECKING:
    from cosearch.space.base import SearchSpace


class TrainEstimator(Estimator):
    name: ClassVar[str] = "train"
    fidelity: ClassVar[str] = "train"
    absolute: ClassVar[bool] = True

    def __init__(self, *, epochs: int = 5, data: str = "digits", batch_size: int = 64, lr: float = 0.05,
                 optimizer: str = "sgd", seed: int = 0, threads: int | None = 1, limit: int | None = None,
                 split_seed: int = 0, persist: bool = True, predictor_root: str | None = None,
                 min_samples: int = 8) -> None:
        from cosearch.train.data import check_spec
        from cosearch.train.trainer import TrainConfig

        self.config_ = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed,
                                   threads=threads)
        self.data_spec = check_spec(data)
        self.limit = limit
        self.split_seed = split_seed
        self.persist = persist
        self.predictor_root = predictor_root
        self.min_samples = min_samples
        self._predictors: dict[tuple, Any] = {}
        self.last_result = None
        self.last_data = None

    def data_for(self, space: "SearchSpace", arch: str):
        from cosearch.train.data import prepare_data

        return prepare_data(self.data_spec, space.input_shape(arch, 1), int(getattr(space, "num_classes", 10)),
                            seed=self.split_seed, limit=self.limit)

    def predictor_for(self, space: "SearchSpace", data):
        from cosearch.train.predictor import LearningCurvePredictor

        key = (repr(sorted(space.config().items())), data.fingerprint())
        p = self._predictors.get(key)
        if p is None:
            if self.persist:
                p = LearningCurvePredictor.for_data(space, data, root=self.predictor_root, min_samples=self.min_samples,
                                                    seed=self.config_.seed)
            else:
                p = LearningCurvePredictor(None, space_config=space.config(), min_samples=self.min_samples,
                                           seed=self.config_.seed)
            self._predictors[key] = p
        return p

    def estimate(self, space: "SearchSpace", arch: str, *, stop_threshold: float | None = None,
                 signals: dict[str, float] | None = None) -> Estimate:
        from cosearch.train.trainer import train_arch

        t0 = time.perf_counter()
        arch = space.canonical(arch)
        data = self.data_for(space, arch)
        pred = self.predictor_for(space, data)
        r = train_arch(space, arch, data, self.config_, stop_threshold=stop_threshold, predictor=pred, signals=signals)
        self.last_result, self.last_data = r, data
        score = r.predicted_final if r.stopped_early and r.predicted_final is not None else r.accuracy_val
        sig = {"val_acc": r.accuracy_val, "epochs_run": float(r.epochs_run), "stopped_early": float(r.stopped_early),
               "train_seconds": r.seconds}
        if r.predicted_final is not None:
            sig["predicted_final"] = r.predicted_final
        for i, v in enumerate(r.curve, 1):
            sig[f"val_acc@{i}"] = v
        return Estimate(arch, float(score), sig, time.perf_counter() - t0, r.fidelity)

    def config(self) -> dict[str, Any]:
        return {"estimator": self.name, "fidelity": self.config_.fidelity, "train": self.config_.to_dict(),
                "data": self.data_spec, "limit": self.limit, "split_seed": self.split_seed, "persist": self.persist,
                "min_samples": self.min_samples}
