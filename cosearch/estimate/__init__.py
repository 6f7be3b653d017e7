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
_BUILT_IN = {
    "tenas": "tenas:TENASEstimator",
    "naswot": "zero_cost:NASWOTEstimator",
    "meco": "zero_cost:MeCoEstimator",
    "swap": "zero_cost:SwapEstimator",
    "synflow": "zero_cost:SynflowEstimator",
    "params": "zero_cost:ParamsEstimator",
    "flops": "zero_cost:FlopsEstimator",
    "zc": "combine:ZeroCostCombined",
    "tenas-flops": "combine:TENASFlopsCombined",
    "zc-all": "combine:AllZeroCostCombined",
    "zc-xgb": "combine:XGBZeroCostCombined",
    "train": "train:TrainEstimator",
}
for _name, _where in _BUILT_IN.items():  # imported when first created
    ESTIMATORS.register(_name, f"cosearch.estimate.{_where}")


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
