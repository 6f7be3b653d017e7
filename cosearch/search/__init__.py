"""The joint architecture × schedule search.

Submodules (``docs/architecture.md``):

- ``config``: ``SearchConfig`` and ``Policy`` (the strategies' numbers, in one place).
- ``loop``: ``Search``, the run and its stages; ``strategies``: ``joint`` / ``sequential`` /
  ``brute`` as registered plug-ins; ``archive``: ``Rec``.
- ``api``: ``run_search`` / ``resume_search`` / ``calibrate_objectives`` (behind ``cosearch search``);
  ``compare``: ``run_compare`` (behind ``cosearch compare``).
- ``evaluator``: the ``Evaluator`` interface; ``engine_evaluator``: ``EngineEvaluator`` (real TVM
  through ``cosearch.compile.engine``); ``testing``: ``FakeEvaluator`` (a simulated compiler, for tests).
- ``proposer``: Optuna NSGA-II proposals over the space's decisions.
- ``predictors``, ``curves``, ``value``: task-latency and accuracy predictors, tuning curves, the
  value of tuning choices.
- ``journal``: the append-only, fsynced ``journal.jsonl``; ``replay``: ``--resume`` from it.
- ``finalize``: the front re-measured and exported, ``result.json``.
- ``pareto``: objectives, normalisation, Pareto front, 2-D hypervolume (pure maths).
- ``report``: ``write_report(run_dir)`` / ``write_compare_report(compare_dir)``, HTML + PNG.

Protocol and rationale: ``docs/search.md``.

The live progress display shared with ``cosearch tune`` is ``cosearch.progress``.
"""
