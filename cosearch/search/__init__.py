"""The joint architecture × schedule search.

Submodules:

- ``pareto``: objectives, normalisation, Pareto front, dominance, 2-D hypervolume (pure maths).
- ``report``: ``write_report(run_dir)`` / ``write_compare_report(compare_dir)``, HTML + PNG.
- ``api``: ``run_search`` / ``resume_search`` / ``calibrate_objectives`` (behind ``cosearch search``).
- ``loop``: ``SearchConfig``, ``Search`` (archive, journal, strategies ``joint`` / ``sequential`` / ``brute``, resume).
- ``compare``: ``run_compare`` (behind ``cosearch compare``).
- ``evaluator``: the ``Evaluator`` interface and ``FakeEvaluator`` (a simulated compiler, for tests);
  ``engine_evaluator``: ``EngineEvaluator`` (real TVM through ``cosearch.compile.engine``).
- ``proposer``: Optuna NSGA-II proposals over the space's decisions.
- ``predictors``: XGBoost task-latency and accuracy predictors, latency calibration.
- ``journal``: the append-only, fsynced ``journal.jsonl``.

Protocol and rationale: ``docs/search.md``.

The live progress display shared with ``cosearch tune`` is ``cosearch.progress``.
"""
