"""Co-search benchmarks: ground truth for comparing search strategies (docs/benchmark.md).

A benchmark (``BENCH``, a folder) holds, for one search space on one CPU:

- every distinct tunable workload of its architectures, tuned to convergence for
  several tuning seeds, with the tuning curve (best µs after n trials) and the wall
  seconds of every batch; the converged schedule database ships inside it;
- per architecture its tasks with weights, the end-to-end latency against that
  converged database (median / p10 / p90, the better of 1 and 2 threads) and the
  seconds of plan, estimate, compile and measure.

Modules: ``store`` (the format: writing and reading, versioned, append-only),
``build`` (``cosearch bench build``: resumable after kill -9 and across sessions),
``replay`` (``ReplayEvaluator``: ``--evaluator replay:BENCH`` for search and compare,
a simulated clock advanced by the recorded costs) and ``score`` (the true front,
hypervolume ratios of runs to it, the two brute forces).
"""

from cosearch.cobench.store import Bench, open_bench

__all__ = ["Bench", "open_bench"]
