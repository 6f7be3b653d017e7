"""Architectures measured side by side on RPC boards (the joint strategy's ``--overlap``).

A target measured on RPC boards (``"measure": "rpc"``) can time as many architectures at once as
the tracker has boards: the tracker hands each session a free board, never a busy one. With
workers, the driver sends each architecture of a group to a worker (``measure_arch``), which
rebuilds the driver's evaluator from the run's config (``screen.worker_spec``), compiles the
architecture from the run's schedule database (workers see the run's schedule folder, as for
screening and split tuning calls) and measures it with the search's measurement settings. The
driver takes the results in the order it sent them and journals them (``Search.do_measure_many``);
the decisions they feed are the driver's. On the local CPU nothing is measured beside anything
else (the device lease), so a group is measured in the driver, one after the other.
"""

from __future__ import annotations

import os
import socket
from typing import Any


def measure_arch(spec: dict[str, Any], arch: str) -> tuple[Any, str]:
    """Compile and measure ``arch`` in a worker -> (``search.evaluator.Measured``, ``host:pid``)."""
    from cosearch.distributed.screen import evaluator_for

    return evaluator_for(spec).measure(arch), f"{socket.gethostname()}:{os.getpid()}"


__all__ = ["measure_arch"]
