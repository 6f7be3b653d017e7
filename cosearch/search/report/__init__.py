"""Human-readable reports of a search run and of a strategy comparison.

``write_report(run_dir)`` reads ``result.json``, ``journal.jsonl`` and
``config.json`` of a run folder (any of them may be missing or partial, e.g. a
run that was killed; what is missing is said in the report) and writes

- ``run_dir/report/*.png``: ``front.png`` (evaluated points, the Pareto front,
  predicted vs measured latency of its points, architectures stopped early at
  their optimistic prediction), ``hypervolume.png`` (hypervolume over time),
  ``latency.png`` (predicted vs measured end-to-end latency, calibration
  error), ``accuracy.png`` (accuracy fidelities against each other, or their
  distribution), ``decisions.png`` (proposals, evaluations, early stops and
  failures over time), ``training.png`` (the training rung). A plot without data
  is not written.
- ``run_dir/report.html``: self-contained (inline CSS, the PNGs embedded as
  base64, no scripts, nothing fetched): summary, the Pareto table with each
  artifact and the command that runs it, the plots, latency-prediction error,
  early-stop decisions, failures and notes.

``write_compare_report(compare_dir)`` reads ``compare.json`` and writes
``compare.png`` (hypervolume over time per strategy; final fronts overlaid)
and a self-contained ``compare.html``.

The accuracy axis is shown under its name (``Objectives.accuracy_label``, e.g.
"naswot score"), the hypervolume in the objectives' own units (``Objectives.area``).
Files are written atomically (temp file, fsync, rename); reports are derived
data and are overwritten on every call.

Modules: ``data`` (reading a run or compare folder, the derived series), ``plots``
(matplotlib figures), ``text`` (number and duration formats), ``page`` (HTML
building blocks), ``run_page`` / ``compare_page`` (the two reports).
"""

from __future__ import annotations

from cosearch.search.report.compare_page import write_compare_report
from cosearch.search.report.run_page import write_report

__all__ = ["write_report", "write_compare_report"]
