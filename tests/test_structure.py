"""The package's shape stays clean: no import cycle between its modules, and no module
imports another module's private (``_name``) names. Read from the source with ``ast``
(nothing imported): imports at any depth count, including those inside functions and
under ``TYPE_CHECKING``, since a cycle hidden in a function is still a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "cosearch"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = p
    return out


def _imports(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """Module -> the package's modules it imports; and every private name imported across modules."""
    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    private: list[str] = []
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = m.split(".") if path.name == "__init__.py" else m.split(".")[:-1]
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base, a.name) for a in node.names]
            else:
                continue
            for target, name in targets:
                t = owner(target)
                if t is None or t == m or not t.startswith("cosearch"):
                    continue
                edges[m].add(t)
                if name and name.startswith("_") and not name.startswith("__"):
                    private.append(f"{m} imports {t}.{name}")
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_checks_find_a_cycle_and_a_private_import(tmp_path):
    """The counting itself: a constructed two-module cycle and a private import are found."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    mods = {"cosearch.x": tmp_path / "x.py", "cosearch.y": tmp_path / "y.py"}
    mods["cosearch.x"].write_text("def f():\n    from cosearch.y import _hidden\n")
    mods["cosearch.y"].write_text("import cosearch.x\n_hidden = 1\n")
    edges, private = _imports(mods)
    assert edges == {"cosearch.x": {"cosearch.y"}, "cosearch.y": {"cosearch.x"}}
    assert private == ["cosearch.x imports cosearch.y._hidden"]
    assert _cycles(edges) == [["cosearch.x", "cosearch.y"]]


def test_no_import_cycle_between_modules():
    edges, _ = _imports(_modules())
    assert _cycles(edges) == []


def test_no_private_name_imported_across_modules():
    _, private = _imports(_modules())
    assert private == []
