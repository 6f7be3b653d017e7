"""Scoring against the truth of a benchmark (``cosearch bench score``, ``compare.json``'s ``truth``).

- **The true front**: every measured architecture of the benchmark at its converged
  end-to-end latency, with its accuracy from an *oracle* (an estimator covering them,
  typically ``table:CSV`` of trained accuracies); its Pareto front and hypervolume.
- **One fixed reference point per benchmark and oracle** (``reference``): accuracy from the
  lowest to the highest oracle accuracy of the benchmark's architectures, latency from
  1.5 x the slowest converged latency to 0 -- the same for every run scored on it.
- **A run's front re-scored** two ways, as a ratio to the true front's hypervolume: at the
  converged latency of its architectures (did it *find* the right ones?) and at its own
  measured latency (what it *exported*), always with oracle accuracies (never the run's
  own estimates). Over time (the journal's ``front`` events): the first time each ratio
  reaches 95 % and 99 %.
- **Two brute forces**, in seconds from the recorded costs: ``independent`` (each
  architecture tuned alone to convergence on an empty database, what a user without a
  shared database pays) and ``shared`` (every distinct task tuned once, then every
  architecture planned, estimated, compiled and measured).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from cosearch.cobench.replay import run_converged_ms
from cosearch.cobench.store import Bench, open_bench
from cosearch.errors import CosearchError
from cosearch.search import pareto

LATENCY_REF_FACTOR = 1.5


def oracle_accuracy(bench: Bench, oracle: str, space=None) -> dict[str, float]:
    """key -> oracle accuracy for the benchmark's measured architectures the oracle covers."""
    from cosearch.estimate import create_estimator

    space = space or bench.space()
    est = create_estimator(oracle, seed=0)
    out: dict[str, float] = {}
    for a in bench.measured():
        try:
            out[a.key] = float(est.estimate(space, a.arch).score)
        except CosearchError:
            continue  # not covered by the oracle
    if not out:
        raise CosearchError(f"the oracle {oracle!r} covers none of the benchmark's {len(bench.measured())} "
                            "measured architectures")
    return out


def reference(bench: Bench, acc: dict[str, float]) -> pareto.Objectives:
    lat = [bench.archs[k].ms for k in acc]
    lo, hi = min(acc.values()), max(acc.values())
    return pareto.Objectives(accuracy_ref=lo, accuracy_best=hi if hi > lo else lo + 1.0,
                             latency_ref_ms=LATENCY_REF_FACTOR * max(lat), latency_best_ms=0.0)


def true_front(bench: Bench, acc: dict[str, float]) -> list[tuple[float, float, str]]:
    pts = [(acc[k], bench.archs[k].ms, k) for k in acc]
    return [pts[i] for i in pareto.pareto_indices(pts)]


def rescore(keys_ms: Sequence[tuple[str, float | None]], bench: Bench, acc: dict[str, float],
            obj: pareto.Objectives) -> dict[str, Any]:
    """Hypervolumes of a front given as (key, own measured ms) at converged and at own latency."""
    conv = [(acc[k], bench.archs[k].ms) for k, _ in keys_ms if k in acc]
    own = [(acc[k], ms) for k, ms in keys_ms if k in acc and ms is not None]
    return {"hv_converged": pareto.hypervolume(conv, obj), "hv_measured": pareto.hypervolume(own, obj),
            "points": len(keys_ms), "scored": len(conv),
            "unknown_keys": [k for k, _ in keys_ms if k not in acc]}


def brute_forces(bench: Bench, keys: set[str] | None = None) -> dict[str, Any]:
    """Seconds of the two brute forces over the measured architectures ``keys`` (default all:
    the ones the oracle scores, so the brute force is what finding *that* true front costs),
    from the recorded costs (tuning: the mean over the tuning seeds of each workload's curve
    seconds to its convergence, plus one call set-up per ``chunk`` trials of the longest task)."""
    chunk = int(bench.header["tuning"].get("chunk", 32))
    over = bench.call_overhead_s()

    def conv(w: str) -> tuple[float, int]:
        cs = list(bench.curves.get(w, {}).values())
        if not cs:
            return 0.0, 0
        return sum(c.seconds_at(c.trials) for c in cs) / len(cs), max(c.trials for c in cs)

    archs = [a for a in bench.measured() if keys is None or a.key in keys]
    tune = {w: conv(w) for w in dict.fromkeys(w for a in archs for w, _ in a.tasks)}
    per_arch, indep_tune = 0.0, 0.0
    for a in archs:
        per_arch += sum(a.cost_s(k) for k in ("plan", "estimate", "compile", "measure"))
        longest = max((tune[w][1] for w, _ in a.tasks if w in tune), default=0)
        indep_tune += sum(tune[w][0] for w, _ in a.tasks if w in tune) + over * math.ceil(longest / chunk)
    longest_all = max((n for _, n in tune.values()), default=0)
    shared_tune = sum(t for t, _ in tune.values()) + over * math.ceil(longest_all / chunk)
    return {"archs": len(archs), "independent_s": indep_tune + per_arch, "shared_s": shared_tune + per_arch,
            "tuning_independent_s": indep_tune, "tuning_shared_s": shared_tune, "per_arch_s": per_arch,
            "call_overhead_s": over}


class Truth:
    """The scoring context of one benchmark and oracle."""

    def __init__(self, bench: Bench | str | Path, oracle: str) -> None:
        self.bench = bench if isinstance(bench, Bench) else open_bench(bench)
        self.oracle = oracle
        self.space = self.bench.space()
        self.acc = oracle_accuracy(self.bench, oracle, self.space)
        self.obj = reference(self.bench, self.acc)
        self.front = true_front(self.bench, self.acc)
        self.hv = pareto.hypervolume([(a, m) for a, m, _ in self.front], self.obj)
        self.brute = brute_forces(self.bench, set(self.acc))

    def summary(self) -> dict[str, Any]:
        return {"bench": str(self.bench.path), "machine_key": self.bench.machine_key, "cpu": self.bench.header.get("cpu"),
                "oracle": self.oracle, "reference_point": self.obj.to_dict(), "archs_scored": len(self.acc),
                "true_hypervolume": self.hv,
                "true_front": [{"key": k, "accuracy": a, "latency_ms": m} for a, m, k in self.front],
                "brute_force": self.brute}

    def key(self, arch: str) -> str:
        return self.space.key(self.space.canonical(arch))

    def score_result(self, run_dir: Path) -> dict[str, Any]:
        """A search folder: its exported front and its journal's front over time."""
        run_dir = Path(run_dir)
        try:
            result = json.loads((run_dir / "result.json").read_text())
        except (OSError, ValueError):
            raise CosearchError(f"{str(run_dir)!r} has no readable result.json (a finished search folder)") from None
        front = [(self.key(r["arch"]), r.get("latency_ms")) for r in result.get("pareto", [])]
        out = rescore(front, self.bench, self.acc, self.obj)
        out["ratio_converged"] = out["hv_converged"] / self.hv if self.hv > 0 else 0.0
        out["ratio_measured"] = out["hv_measured"] / self.hv if self.hv > 0 else 0.0
        out["exported_vs_converged"] = self.exported_vs_converged(front, replay_seed=_replay_seed(run_dir, self.bench))
        out["wall_s"] = float(result.get("wall_s") or 0.0)
        curve = self.curve(run_dir)
        out["curve"] = curve
        for lvl in (0.95, 0.99):
            for which in ("converged", "measured"):
                col = 1 if which == "converged" else 2
                hit = next((c[0] for c in curve if c[col] >= lvl - 1e-12), None)
                out[f"t{int(lvl * 100)}_{which}_s"] = hit
        b = self.brute
        out["compute_vs_brute"] = {"independent": out["wall_s"] / b["independent_s"] if b["independent_s"] else None,
                                   "shared": out["wall_s"] / b["shared_s"] if b["shared_s"] else None}
        for k in ("strategy", "proposed", "evaluated", "stopped_early", "trials"):
            out[k] = result.get(k)
        return out

    def exported_vs_converged(self, front: Sequence[tuple[str, float | None]], tolerance: float = 0.10,
                              replay_seed: int | None = None) -> dict[str, Any]:
        """Per exported front point, its own measured latency over the benchmark's converged
        latency of the same architecture (1.0: as fast as tuning to convergence makes it);
        ``within`` is the share of points at most ``tolerance`` above converged. For a replayed
        run (``replay_seed``), ``run`` holds the same over the latency that tuning to
        convergence gives that run (``replay.run_converged_ms``: the curves it followed)."""
        pts = [(k, ms) for k, ms in front if k in self.acc and ms is not None and self.bench.archs[k].ms]

        def stats(r: list[float]) -> dict[str, Any]:
            r = sorted(r)
            return {"points": len(r), "median": r[len(r) // 2] if r else None, "max": r[-1] if r else None,
                    "within": sum(1 for v in r if v <= 1.0 + tolerance) / len(r) if r else None,
                    "tolerance": tolerance}

        out = stats([ms / self.bench.archs[k].ms for k, ms in pts])
        if replay_seed is not None:
            out["run"] = stats([ms / run_converged_ms(self.bench, self.bench.archs[k], replay_seed) for k, ms in pts])
        return out

    def curve(self, run_dir: Path) -> list[list[float]]:
        """[t, ratio at converged latency, ratio at the run's search-measured latency] per front event."""
        from cosearch.search.journal import read_journal

        pts = []
        for ev in read_journal(Path(run_dir) / "journal.jsonl"):
            if ev.get("event") != "front":
                continue
            r = rescore([(str(k), float(m)) for _a, m, k in ev.get("points", [])], self.bench, self.acc, self.obj)
            pts.append([float(ev["t"]), r["hv_converged"] / self.hv if self.hv else 0.0,
                        r["hv_measured"] / self.hv if self.hv else 0.0])
        return pts


def _replay_seed(run_dir: Path, bench: Bench) -> int | None:
    """The replay seed of a run folder replayed on ``bench`` (its config.json), else None."""
    try:
        ev = json.loads((Path(run_dir) / "config.json").read_text()).get("evaluator", {})
    except (OSError, ValueError):
        return None
    if ev.get("kind") != "replay" or ev.get("machine_key") != bench.machine_key:
        return None
    return int(ev.get("seed", 0))


def score_runs(bench: str | Path, runs: Sequence[Path], *, oracle: str) -> dict[str, Any]:
    """``cosearch bench score``: search folders and compare folders (each strategy's folder)."""
    truth = Truth(bench, oracle)
    scored: dict[str, Any] = {}
    for r in runs:
        r = Path(r)
        if (r / "compare.json").exists():
            data = json.loads((r / "compare.json").read_text())
            for s in data.get("strategies", {}):
                scored[str(r / s)] = truth.score_result(r / s)
        else:
            scored[str(r)] = truth.score_result(r)
    return {"truth": truth.summary(), "runs": scored}
