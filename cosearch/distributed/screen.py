"""The work a search sends to its workers: screening one architecture (``screen``) -- its plan
(build, export, import, task extraction), what the schedule database holds for its tasks, and
its accuracy estimate -- computed by the same evaluator as the driver's, rebuilt in the worker
from the run's resolved config (``worker_spec``).

Everything ``screen`` returns depends on the architecture, the config and the schedule
database as the worker read it; nothing on what the driver decided meanwhile. The accuracy is
computed speculatively (the driver may stop the architecture on its plan before it asks for the
accuracy: then the score is dropped, and the simulated seconds of an evaluator that simulates
are charged to the run only for what the driver takes, so that the run's clock is the same as in
one process). A failure is data (``plan_error``, ``accuracy_error``), except a configuration
error (``CosearchError``), which the driver raises as it would have.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from typing import Any

from cosearch.errors import CosearchError, first_line


@dataclass
class Screened:
    arch: str
    plan: Any = None  # search.evaluator.Plan (handle None, states set) or None
    plan_error: str | None = None
    plan_sim: float = 0.0  # simulated seconds of the plan (an evaluator with a simulated clock)
    accuracy: tuple[float, float, str] | None = None
    accuracy_error: str | None = None
    accuracy_sim: float = 0.0
    fatal: str | None = None  # a configuration error: the driver raises it
    pid: int = 0  # the process that screened it (the journal's ``plan`` event names it)
    host: str = ""


def worker_spec(search: Any, factory: Any) -> dict[str, Any]:
    """What a worker needs to rebuild the driver's evaluator: ``factory(search config dict,
    schedules dir)`` (a module-level function, which Ray sends by reference; the search's is
    ``search.api.worker_evaluator``), the resolved search config, the schedule database, the
    device lease."""
    lease = getattr(search, "lease", None)
    return {"factory": factory, "search": search.cfg.to_dict(), "schedules": str(search.schedules.absolute()),
            "lease": None if lease is None else {"dir": lease.dir, "host": lease.host}}


_EVALUATORS: dict[str, Any] = {}  # one evaluator per worker process and run


def evaluator_for(spec: dict[str, Any]):
    """The evaluator ``spec`` describes, made once per worker process and run."""
    import json

    key = json.dumps({k: v for k, v in spec.items() if k != "factory"}, sort_keys=True, default=str)
    ev = _EVALUATORS.get(key)
    if ev is None:
        ev = _EVALUATORS[key] = spec["factory"](spec["search"], spec["schedules"])
    return ev


def screen(spec: dict[str, Any], arch: str) -> Screened:
    """Plan and score ``arch`` (in a worker, or inline)."""
    from cosearch.distributed.lease import DeviceLease

    out = Screened(arch, pid=os.getpid(), host=socket.gethostname())
    lease = DeviceLease(**spec["lease"]) if spec.get("lease") else None
    try:
        ev = evaluator_for(spec)
    except CosearchError as e:
        out.fatal = first_line(e)
        return out
    with lease.work("screen") if lease is not None else contextlib.nullcontext():
        sim0 = ev.sim
        try:
            plan = ev.plan(arch)
            plan.states = ev.task_states(plan)
            plan.handle = None  # the engine's plan stays in the worker (the driver re-plans what it tunes)
            out.plan = plan
        except CosearchError as e:
            out.fatal = first_line(e)
        except Exception as e:  # noqa: BLE001 - failures are data
            out.plan_error = first_line(e)
        out.plan_sim, sim0 = ev.sim - sim0, ev.sim
        if out.plan is not None:
            try:
                out.accuracy = ev.accuracy(arch)
            except CosearchError as e:
                out.fatal = first_line(e)
            except Exception as e:  # noqa: BLE001
                out.accuracy_error = first_line(e)
            out.accuracy_sim = ev.sim - sim0
    return out


__all__ = ["Screened", "evaluator_for", "screen", "worker_spec"]
