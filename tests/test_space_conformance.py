"""One conformance kit run against every registered space (incl. the ``tiny``
plug-in from ``tests/plugins``): what search strategies, estimators and the
compiler rely on."""

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plugins.tiny_space  # noqa: E402,F401  registers "tiny"

from cosearch.errors import CosearchError  # noqa: E402
from cosearch.space import SPACES, Decision, SearchSpace, create_space  # noqa: E402

NAMES = SPACES.names()


@pytest.fixture(scope="module", params=NAMES)
def space(request) -> SearchSpace:
    return create_space(request.param)


def samples(space, n=30, seed=0):
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def test_plugin_and_builtin_spaces_registered():
    assert {"nb201", "mbv2", "tiny"} <= set(NAMES)


def test_plugin_loads_through_env(monkeypatch):
    from cosearch.cli import load_plugins

    monkeypatch.setenv("COSEARCH_PLUGINS", " plugins.tiny_space , ")
    load_plugins()
    assert create_space("tiny").canonical(" C8K3 ") == "c8k3"
    monkeypatch.setenv("COSEARCH_PLUGINS", "plugins.no_such_space")
    with pytest.raises(CosearchError, match="plugins.no_such_space"):
        load_plugins()


def test_identity(space):
    assert space.name in NAMES and isinstance(space, SPACES.get(space.name))
    cfg = space.config()
    assert cfg["space"] == space.name
    json.dumps(cfg)  # written next to results


def test_size_counts_the_architectures(space):
    """``size()`` is the number of distinct architectures: the product of the decisions'
    choices when the space lists them; a small space is enumerated by sampling; a large or
    unbounded one keeps giving new architectures."""
    n = space.size()
    assert n is None or (isinstance(n, int) and not isinstance(n, bool) and n >= 1), n
    if space.decisions():
        assert n == math.prod(len(d.choices) for d in space.decisions())
    if n is not None and n <= 100:
        assert len(set(samples(space, 40 * n, seed=6))) == n
    else:
        assert len(set(samples(space, 200, seed=6))) >= 190


def test_canonical_round_trip_and_idempotent(space):
    for a in samples(space):
        assert space.canonical(a) == a  # samples are canonical
        assert space.canonical(space.canonical(a)) == a
        assert space.key(a) == space.key(space.canonical(a))


@pytest.mark.parametrize("bad", ["", "???", "|-+-|", "x" * 200])
def test_garbage_raises_one_line_error(space, bad):
    with pytest.raises(CosearchError) as e:
        space.canonical(bad)
    assert str(e.value) and "\n" not in str(e.value)


def test_decisions_round_trip(space):
    """A space that lists its decisions (what the proposer searches over) maps every sampled
    arch to one choice per decision and back to the same canonical string; every combination
    of choices is an arch; bad values are one-line errors naming the decision. A space that
    lists none says so with ``CosearchError`` (the proposer then uses ``sample``)."""
    decisions = space.decisions()
    a0 = samples(space, 1)[0]
    if not decisions:
        with pytest.raises(CosearchError):
            space.to_decisions(a0)
        with pytest.raises(CosearchError):
            space.from_decisions({})
        return
    names = [d.name for d in decisions]
    assert len(set(names)) == len(names)
    for d in decisions:
        assert isinstance(d, Decision) and len(d.choices) >= 2 and len(set(d.choices)) == len(d.choices), d
    for a in samples(space):
        values = space.to_decisions(a)
        assert list(values) == names and all(values[d.name] in d.choices for d in decisions)
        assert space.from_decisions(values) == a
    rng = np.random.default_rng(4)
    for pick in ("first", "last", "random", "random"):
        values = {d.name: d.choices[{"first": 0, "last": -1}.get(pick, int(rng.integers(len(d.choices))))]
                  for d in decisions}
        arch = space.from_decisions(values)
        assert space.canonical(arch) == arch and space.to_decisions(arch) == values
    d0, good = decisions[0], space.to_decisions(a0)
    for bad in ({k: v for k, v in good.items() if k != d0.name}, good | {d0.name: "no such choice"}):
        with pytest.raises(CosearchError, match=re.escape(f"decision {d0.name!r}")) as e:
            space.from_decisions(bad)
        assert "\n" not in str(e.value)


def test_mutate_gives_a_different_valid_arch(space):
    rng = np.random.default_rng(1)
    for a in samples(space, 20):
        b = space.mutate(a, rng)
        assert b != a and space.canonical(b) == b


def test_crossover_takes_decisions_from_parents(space):
    rng = np.random.default_rng(2)
    archs = samples(space, 20)
    mixed = 0
    for a, b in zip(archs[::2], archs[1::2]):
        c = space.crossover(a, b, rng)
        assert space.canonical(c) == c
        ea, eb, ec = space.encode(a), space.encode(b), space.encode(c)
        assert np.all((ec == ea) | (ec == eb)), (a, b, c)
        mixed += c not in (a, b)
    assert mixed >= 1  # it really mixes


def test_encode_fixed_length_and_mostly_distinct(space):
    archs = sorted(set(samples(space, 40)))
    codes = [space.encode(a) for a in archs]
    for code in codes:
        assert code.shape == (space.encoding_size,) and np.issubdtype(code.dtype, np.floating)
        assert np.all(np.isfinite(code))
    distinct = len({c.tobytes() for c in codes})
    assert distinct >= 0.9 * len(archs)


def test_moves_are_deterministic_given_the_rng(space):
    def run(seed):
        rng = np.random.default_rng(seed)
        a, b = space.sample(rng), space.sample(rng)
        return [a, b, space.mutate(a, rng), space.crossover(a, b, rng)]

    assert run(7) == run(7)
    assert samples(space, 10, seed=3) == samples(space, 10, seed=3)
    assert len(set(samples(space, 10, seed=3) + samples(space, 10, seed=4))) > 1


def test_build_is_seeded_and_forward_has_batch_shape(space):
    import torch

    a = samples(space, 1, seed=5)[0]
    m1, m2, m3 = space.build(a, seed=0), space.build(a, seed=0), space.build(a, seed=1)
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert any(not torch.equal(s1[k], s3[k]) for k in s1 if s1[k].is_floating_point())
    shape = space.input_shape(a, 2)
    assert shape[0] == 2
    with torch.no_grad():
        y = m1.eval()(torch.randn(shape))
    assert y.ndim == 2 and y.shape[0] == 2 and torch.isfinite(y).all()
    if "num_classes" in space.config():
        assert y.shape[1] == space.config()["num_classes"]
