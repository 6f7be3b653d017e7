"""TVM's thread pool as cosearch sets it (cosearch.compile.deploy.threads): sized to every usable
CPU when it starts, lowered and raised again per model, the count in effect recorded honestly.

Each pool check runs in a fresh interpreter: the pool is sized once per process, so only a new
process shows what a user's process gets."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cosearch.compile.deploy.threads import RuntimeSettings, candidates
from cosearch.errors import CosearchError

CPUS = os.cpu_count() or 1


def _all_cpus() -> None:  # a child inherits the calling thread's affinity, which TVM may have narrowed
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, range(CPUS))


def _py(code: str, **env: str) -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    e.update(env)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=300,
                       preexec_fn=_all_cpus)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(CPUS < 2, reason="needs 2 CPUs")
def test_importing_cosearch_sizes_the_pool_to_every_cpu():
    # unset, TVM's x86 default is half the logical CPUs: 1 on a 2-core machine, whatever is asked later
    out = _py("import json, cosearch, tvm\n"
              "print(json.dumps({'env': __import__('os').environ['TVM_NUM_THREADS'],"
              " 'pool': tvm.get_global_func('runtime.NumThreads')()}))")
    assert out == {"env": str(CPUS), "pool": CPUS}


@pytest.mark.skipif(CPUS < 2, reason="needs 2 CPUs")
def test_a_count_lowered_to_one_goes_back_up():
    # the first configure call of a process must not size the pool to its own (smaller) count
    # and the calling thread keeps every CPU (children and compile threads inherit its affinity)
    out = _py("import json, os, cosearch\n"
              "from cosearch.compile.deploy.threads import RuntimeSettings, apply\n"
              "n = [apply(RuntimeSettings(1)), apply(RuntimeSettings(2, 'pinned')), apply(RuntimeSettings(1, 'pinned'))]\n"
              "aff = len(os.sched_getaffinity(0))\n"
              "print(json.dumps([*n, apply(RuntimeSettings(2)), aff]))")
    assert out == [1, 2, 1, 2, CPUS]


def test_the_count_in_effect_is_recorded_not_the_one_asked():
    # a user's TVM_NUM_THREADS=1 is respected; asking for 2 then runs (and is recorded as) 1
    out = _py("import json, cosearch\n"
              "from cosearch.compile.deploy.measure import measure_local\n"
              "from cosearch.compile.deploy.threads import RuntimeSettings, apply\n"
              "import onnx, tvm\n"
              "from onnx import TensorProto, helper\n"
              "from cosearch.compile.frontend import from_onnx\n"
              "io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 4]) for n in ('x', 'y')]\n"
              "g = helper.make_graph([helper.make_node('Add', ['x', 'x'], ['y'])], 'g', io[:1], io[1:])\n"
              "ex = tvm.compile(from_onnx(helper.make_model(g)).mod, target='llvm')\n"
              "r = measure_local(ex, [('x', (4, 4), 'float32')], threads=2)\n"
              "print(json.dumps({'apply': apply(RuntimeSettings(2)), 'recorded': r.latency.threads}))",
              TVM_NUM_THREADS="1")
    assert out == {"apply": 1, "recorded": 1}


def test_settings_are_checked():
    assert RuntimeSettings.from_dict({"threads": 2}).affinity == "shared"
    assert RuntimeSettings(1, "pinned").to_dict() == {"threads": 1, "affinity": "pinned"}
    for bad in ({"threads": 0}, {"threads": True}, {"threads": 2, "affinity": "spread"}, {"affinity": "shared"}, [2]):
        with pytest.raises(CosearchError, match="runtime"):
            RuntimeSettings.from_dict(bad)
    assert candidates(1) == [1] and candidates(2) == [1, 2] and candidates(8) == [1, 4, 8]
