"""When to stop tuning a task: the ``EarlyStopRule`` interface (``rule``), its registry
``RULES`` and the built-in kinds (``never``, ``always``, ``stall``); the learnt ``xgb``
rule (``xgb.XGBStop``) is registered by name and imported only when asked for."""

from cosearch.compile.plan import OP_KINDS, TaskFeatures
from cosearch.compile.tuning.stop.rule import (
    RULES,
    Always,
    EarlyStopRule,
    Never,
    Stall,
    TaskProgress,
    TaskStats,
    create,
    load_rule,
)

__all__ = ["OP_KINDS", "RULES", "Always", "EarlyStopRule", "Never", "Stall", "TaskFeatures", "TaskProgress",
           "TaskStats", "create", "load_rule"]
