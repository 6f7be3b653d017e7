"""Training-free (and table) accuracy estimators, registered by name.

``table:PATH`` is resolved specially: the part after ``:`` is a CSV path.
"""

from __future__ import annotations

from typing import Any

from cosearch.errors import CosearchError
from cosearch.estimate.activations import PatternUndefined, register_activation, register_smooth
from cosearch.estimate.base import Estimate, Estimator
from cosearch.registry import Registry

ESTIMATORS: Registry[type[Estimator]] = Registry("estimator")
ESTIMATORS.register("tenas", "cosearch.estimate.tenas:TENASEstimator")
ESTIMATORS.register("naswot", "cosearch.estimate.zero_cost:NASWOTEstimator")
ESTIMATORS.register("meco", "cosearch.estimate.zero_cost:MeCoEstimator")
ESTIMATORS.register("swap", "cosearch.estimate.zero_cost:SwapEstimator")
ESTIMATORS.register("synflow", "cosearch.estimate.zero_cost:SynflowEstimator")
ESTIMATORS.register("params", "cosearch.estimate.zero_cost:ParamsEstimator")
ESTIMATORS.register("flops", "cosearch.estimate.zero_cost:FlopsEstimator")
ESTIMATORS.register("zc", "cosearch.estimate.combine:ZeroCostCombined")
ESTIMATORS.register("tenas-flops", "cosearch.estimate.combine:TENASFlopsCombined")
ESTIMATORS.register("zc-all", "cosearch.estimate.combine:AllZeroCostCombined")
ESTIMATORS.register("zc-xgb", "cosearch.estimate.combine:XGBZeroCostCombined")
ESTIMATORS.register("train", "cosearch.estimate.train:TrainEstimator")


def create_estimator(spec: str, /, **kwargs: Any) -> Estimator:
    name, sep, arg = spec.partition(":")
    if name == "table":
        from cosearch.estimate.table import TableEstimator

        return TableEstimator(path=arg, **kwargs)
    if sep:
        raise CosearchError(f"estimator {spec!r} takes no ':' argument; only table:PATH does "
                            f"(estimators: {', '.join(ESTIMATORS.names())}, table:PATH)")
    return ESTIMATORS.create(name, **kwargs)


__all__ = ["ESTIMATORS", "Estimate", "Estimator", "PatternUndefined", "create_estimator", "register_activation",
           "register_smooth"]
