"""cosearch: compiler-integrated co-search of neural architectures and TVM schedules.

Data flow: ``space`` (architectures) -> ``estimate`` (training-free accuracy)
-> ``compile`` (targets, import, MetaSchedule tuning, schedule databases,
artifacts) -> ``search`` (the joint loop and its baselines); ``cobench`` holds the
benchmarks strategies are scored on, ``train`` the short-training rung. The packages
and where to add a space, an estimator, a strategy, a stop rule or a target:
``docs/architecture.md``.
"""

from cosearch.compile.deploy.threads import size_pool_env
from cosearch.errors import CosearchError

size_pool_env()  # before any TVM call: TVM sizes its thread pool once (see compile/deploy/threads.py)

__version__ = "0.1.0"
__all__ = ["CosearchError", "__version__"]
