"""The joint architecture × schedule search.

Submodules:

- ``pareto``: objectives, normalisation, Pareto front, dominance, 2-D hypervolume (pure maths).
- ``report``: ``write_report(run_dir)`` / ``write_compare_report(compare_dir)``, HTML + PNG.

The live progress display shared with ``cosearch tune`` is ``cosearch.progress``.
"""
