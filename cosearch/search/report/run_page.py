"""``write_report(run_dir)``: the report of one search run (``report.html`` + ``report/*.png``).

One function per section of the page, each taking the ``RunData`` and returning its
HTML pieces; ``write_report`` draws the plots, composes the sections and writes.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path

from cosearch.search.report.data import (RunData, checked_stops, error_groups, finite, folder, load_run, num,
                                         stopped_task_gains, train_prediction_pairs, training_totals, tuning_trials)
from cosearch.search.report.page import (by_latency, cards, config_rows, figure, notes, objectives_table, run_cmd,
                                         table, write_page, write_png)
from cosearch.search.report.plots import RUN_PLOTS
from cosearch.search.report.text import arch_text, dur, esc, fnum, pct, short

CAPTIONS = {
    "front": "Each dot is an architecture at its latest accuracy estimate. Filled: measured end-to-end latency; "
             "hollow grey: latency only predicted; orange ×: stopped early at its optimistic (accuracy, latency) "
             "prediction. Red: the final Pareto front (numbers = rows of the table), with each front point's "
             "predicted latency as a hollow red circle. Dashed: the reference point of the hypervolume.",
    "hypervolume": "Hypervolume of the measured front in the objectives' own units (accuracy axis × ms: the area "
                   "the front dominates up to the run's fixed reference point), after every change of the front; "
                   "dotted/dashed: 95 % / 99 % of the final value.",
    "latency": "One point per measured architecture: the latency predicted just before its first end-to-end "
               "measurement vs that measurement, coloured by prediction source.",
    "accuracy": "Accuracy estimates of the same architectures at two fidelities (when the run has two), "
                "or their distribution.",
    "decisions": "Cumulative proposals, end-to-end measurements, early stops (architectures and tuning tasks) "
                 "and failures.",
    "training": "The training rung: validation accuracy per epoch of every trained architecture (orange dashed: "
                "stopped early by the learning-curve rule), and the rule's predicted final accuracy at each "
                "decision of the completed runs vs their final accuracy.",
}


def _draw_plots(run: RunData) -> list[tuple[str, bytes | None, str]]:
    """Every run plot as (name, PNG or None, why not); written to ``report/<name>.png``."""
    plots = []
    for name, fn in RUN_PLOTS:
        try:
            data, why = fn(run)
        except Exception as e:  # a plot must not cost the whole report
            data, why = None, f"plot failed: {type(e).__name__}: {short(e, 200)}"
        plots.append((name, data, why))
        write_png(run.run_dir / "report" / f"{name}.png", data)
    return plots


def _header(run: RunData) -> list[str]:
    cfg = run.config or {}
    bits = [str(cfg.get(k)) for k in ("strategy", "space", "estimator") if isinstance(cfg.get(k), str)]
    tgt = cfg.get("target")
    if isinstance(tgt, dict):
        tgt = tgt.get("name") or tgt.get("identity")
    if isinstance(tgt, str):
        bits.append(f"on {tgt}")
    return [f"<h1>cosearch run report</h1><p class=\"sub\">{esc(' · '.join(bits) or run.run_dir.name)} "
            f"— <code>{esc(run.run_dir)}</code></p>"]


def _summary(run: RunData) -> list[str]:
    res = run.result or {}
    pareto = run.pareto()
    evaluated = res.get("evaluated", len(run.measured) if run.events else None)
    n_eval = int(num(evaluated)) if math.isfinite(num(evaluated)) else len(run.measured)
    stopped = res.get("stopped_early", len(run.stop_arch) if run.events else None)
    trials = tuning_trials(run)
    out = [cards([
        ("Pareto points", str(len(pareto))),
        (f"hypervolume ({run.hv_units})", fnum(run.hv_shown(run.final_hv()))),
        ("proposed", str(run.n_proposed) if run.events else "—"),
        ("evaluated", str(evaluated) if evaluated is not None else "—"),
        ("stopped early", str(stopped) if stopped is not None else "—"),
        ("tuning trials", fnum(trials) if math.isfinite(trials) else "—"),
        ("wall time", dur(res.get("wall_s", (run.done or {}).get("wall_s", run.t_end)))),
    ])]
    if n_eval == 0 and not pareto:
        out.append("<div class=\"empty\">No architecture was evaluated (0 evaluated): there is no front yet."
                   + (f" The run ended with reason {esc(run.done.get('reason'))!s}." if run.done else "") + "</div>")
    if run.done is None and run.events:
        out.append("<div class=\"note\">The journal has no <code>done</code> event: the run is still going, "
                   "or was stopped before it finished (it can be resumed).</div>")
    return out


def _artifact_cell(run: RunData, art) -> str:
    if not art:
        return "—"
    missing = "" if (run.run_dir / str(art)).exists() else " <span class=\"muted\">(missing)</span>"
    return f"<a href=\"{esc(art)}\"><code>{esc(art)}</code></a>" + missing


def _pareto_section(run: RunData) -> list[str]:
    pareto = run.pareto()
    if not pareto:
        return ["<h2>Pareto front</h2>", "<p>No Pareto point.</p>"]
    rows = []
    any_trained = any(isinstance(p.get("trained"), dict) for p in pareto)
    for i, p in enumerate(by_latency(pareto)):
        lat, pred = num(p.get("latency_ms")), num(p.get("latency_pred_ms"))
        err = abs(pred - lat) / lat if finite(lat, pred) and lat > 0 else math.nan
        art = p.get("artifact")
        rows.append([str(i), f"<code>{esc(arch_text(p.get('arch')))}</code>", fnum(p.get("accuracy")),
                     fnum(lat), fnum(pred), pct(err), _artifact_cell(run, art), run_cmd(run.run_dir, art)])
        if any_trained:  # --train-pareto: held-out accuracy of the trained artifact (TVM / PyTorch)
            t = p.get("trained") if isinstance(p.get("trained"), dict) else None
            rows[-1].append("—" if t is None else f"{fnum(t.get('tvm_heldout'))} / {fnum(t.get('torch_heldout'))} "
                            f"<code>{esc(t.get('artifact'))}</code>")
    head = ["#", "architecture", esc(run.label), "latency (ms, measured)", "latency (ms, predicted)",
            "prediction error", "artifact", "run it"] + (["trained held-out (TVM / torch)"] if any_trained else [])
    return ["<h2>Pareto front</h2>", table(head, rows, numeric={0, 2, 3, 4, 5}),
            f"<p class=\"muted\">Latency: median end-to-end measurement of the deployable artifact. "
            f"The accuracy axis, {esc(run.label)}, is the estimator's value at the highest fidelity reached.</p>"]


def _plots_section(plots: list[tuple[str, bytes | None, str]]) -> list[str]:
    out = ["<h2>Plots</h2><div class=\"plots\">"]
    missing = []
    for name, data, why in plots:
        if data is not None:
            out.append(figure(data, esc(CAPTIONS[name]) + f" <code>report/{name}.png</code>", name))
        else:
            missing.append(f"{name}: {why}")
    out.append("</div>")
    if missing:
        out.append("<p class=\"muted\">Not plotted — " + esc("; ".join(missing)) + ".</p>")
    return out


def _latency_section(run: RunData) -> list[str]:
    out = ["<h2>Latency prediction error</h2>"]
    if not run.pairs:
        return out + ["<p>No architecture has both a latency prediction and an end-to-end measurement.</p>"]
    rows = [[esc(name), str(e["n"]), pct(e["median"]), pct(e["max"]), fnum(e["ratio"], 3)]
            for name, e in error_groups(run.pairs)]
    out.append(table(["prediction source", "architectures", "median |error|", "max |error|",
                      "median measured / predicted"], rows, numeric={1, 2, 3, 4}))
    out.append("<p class=\"muted\">Relative error |predicted − measured| / measured, with the prediction "
               "made just before each architecture's first end-to-end measurement.</p>")
    cal = (run.result or {}).get("latency_calibration")
    if isinstance(cal, dict) and cal:
        out.append("<p>Calibration reported by the run: <code>" + esc(short(cal, 400)) + "</code></p>")
    return out


def _stops_section(run: RunData) -> list[str]:
    out = ["<h2>Early-stop decisions</h2>"]
    counts = Counter(("architecture", str(e.get("reason", "?"))) for e in run.stop_arch)
    counts.update(("tuning task", str(e.get("reason", "?"))) for e in run.stop_task)
    if not counts:
        return out + ["<p>No early-stop decision was made.</p>"]
    out.append(table(["stopped", "reason", "count"],
                     [[esc(k), esc(r), str(n)] for (k, r), n in sorted(counts.items())], numeric={2}))
    checked = checked_stops(run)
    if checked:
        held = sum(1 for h, _ in checked if h)
        dom = sum(1 for _, d in checked if d)
        out.append(f"<p>{len(checked)} architecture(s) stopped early were measured later: the optimistic "
                   f"latency was ≤ the measured one for {held}, and {dom} are indeed dominated by the final "
                   "front.</p>")
    else:
        out.append("<p class=\"muted\">No architecture stopped early was measured later, so the stopping "
                   "decisions cannot be checked against measurements in this run.</p>")
    gains = stopped_task_gains(run)
    if gains:
        out.append(f"<p>{len(gains)} stopped task(s) were tuned later: predicted gain (µs) vs real gain "
                   + esc(", ".join(f"{fnum(p, 3)}→{fnum(r, 3)}" for p, r in gains[:20])) + ".</p>")
    return out


def _training_rows(run: RunData) -> list[list[str]]:
    rows = []
    for e in sorted(run.trains, key=lambda e: num(e.get("t"))):
        k = str(e.get("key"))
        last = (e.get("decisions") or [{}])[-1] if e.get("decisions") else {}
        last = last if isinstance(last, dict) else {}
        rows.append([f"<code>{esc(short(arch_text(run.arch.get(k, k)), 70))}</code>",
                     fnum(run.measured.get(k)), fnum(e.get("threshold"), 3),
                     f"{len(e.get('curve') or [])}/{esc(e.get('epochs'))}",
                     fnum(last.get("predicted"), 3) if last else "—", fnum(last.get("margin"), 3) if last else "—",
                     "stopped" if e.get("stopped") else fnum(e.get("final"), 3),
                     esc(last.get("rule", "—")) if last else "—", dur(e.get("seconds"))])
    return rows


def _training_section(run: RunData) -> list[str]:
    if not run.trains:
        return []
    res = run.result or {}
    tr = res.get("training") if isinstance(res.get("training"), dict) else {}
    n = training_totals(run)
    run_ep, plan_ep = n["epochs_run"], n["epochs_planned"]
    out = ["<h2>Training rung</h2>",
           f"<p>{n['trained']} architecture(s) trained ({esc(tr.get('epochs', '?'))} epochs on "
           f"<code>{esc(tr.get('data', '?'))}</code>), {n['stopped']} stopped early by the learning-curve rule "
           f"when their optimistic final accuracy could not beat the front at their measured latency: "
           f"{run_ep} of {plan_ep} epochs run ({pct(1 - run_ep / plan_ep) if plan_ep else '—'} saved), "
           f"{dur(n['seconds'])} of training.</p>"]
    pairs = train_prediction_pairs(run)
    if pairs:
        mae = statistics.fmean(abs(p - f) for p, f, _ in pairs)
        out.append(f"<p>Predicted vs final accuracy over {len(pairs)} decisions of completed runs: mean "
                   f"|error| {fnum(mae, 3)}.</p>")
    rows = _training_rows(run)
    out.append(table(["architecture", "latency (ms)", "needed accuracy", "epochs", "last prediction", "margin",
                      "final accuracy", "rule", "time"], rows[:60], numeric={1, 2, 4, 5, 6}))
    if len(rows) > 60:
        out.append(f"<p class=\"muted\">… and {len(rows) - 60} more in journal.jsonl.</p>")
    return out


def _failures_section(run: RunData) -> list[str]:
    if not run.fails:
        return []
    by_stage = Counter(str(e.get("stage", "?")) for e in run.fails)
    rows = [[esc(short(e.get("key"), 40)), esc(e.get("stage", "?")), esc(short(e.get("error"), 200))]
            for e in run.fails[:10]]
    counts = [[esc(s), str(n)] for s, n in sorted(by_stage.items())]
    out = ["<h2>Failures</h2>", table(["stage", "count"], counts, {1}),
           table(["key", "stage", "error (first line)"], rows)]
    if len(run.fails) > 10:
        out.append(f"<p class=\"muted\">… and {len(run.fails) - 10} more in journal.jsonl.</p>")
    return out


def _config_section(run: RunData) -> list[str]:
    out = ["<h2>Configuration</h2>"]
    if run.objectives is not None:
        out.append(objectives_table(run.objectives))
    if run.config:
        out.append(table(["setting", "value"], config_rows(run.config)))
    if run.starts > 1:
        out.append(f"<p>The run was resumed {run.starts - 1} time(s).</p>")
    if run.notes:
        out.append(notes(run.notes))
    out.append("<p class=\"muted\">Files: <code>result.json</code>, <code>journal.jsonl</code>, "
               "<code>config.json</code>, <code>report/*.png</code>.</p>")
    return out


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` and ``run_dir/report/*.png``; return the HTML path."""
    run_dir = folder(run_dir, "search run")
    run = load_run(run_dir)
    plots = _draw_plots(run)
    body = (_header(run) + _summary(run) + _pareto_section(run) + _plots_section(plots) + _latency_section(run)
            + _stops_section(run) + _training_section(run) + _failures_section(run) + _config_section(run))
    return write_page(run_dir / "report.html", f"cosearch report — {run_dir.name}", body)
