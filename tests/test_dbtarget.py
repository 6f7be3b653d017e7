"""Schedule databases bound to a target identity (``bind_database``): written once,
atomically; a foreign identity is refused in one line or, when accepted, warned about."""

from __future__ import annotations

import json
import threading
import warnings

import pytest

from cosearch.compile.target.binding import SCHEMA, TARGET_FILE, ForeignSchedulesWarning, bind_database, read_binding
from cosearch.compile.target import load_target
from cosearch.errors import CosearchError
from cosearch.paths import default_schedules_dir


def _target(tmp_path, name, mcpu, cores=2, **extra):
    p = tmp_path / "targets" / f"{name}.json"
    p.parent.mkdir(exist_ok=True)
    p.write_text(json.dumps({"target": {"kind": "llvm", "mcpu": mcpu, "num-cores": cores, **extra}}))
    return load_target(str(p))


def test_first_bind_writes_identity_atomically_then_same_target_is_silent(tmp_path):
    t = load_target("host")
    db = tmp_path / "new" / "db"  # missing parents are created
    bind_database(db, t)
    data = json.loads((db / TARGET_FILE).read_text())
    assert data["schema"] == SCHEMA and data["name"] == "host" and data["identity"] == t.identity()
    assert data["machine_key"] == t.machine_key() and data["tvm"].startswith("0.27") and "T" in data["created"]
    assert sorted(p.name for p in db.iterdir()) == [TARGET_FILE]  # no temp file left
    before = (db / TARGET_FILE).read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bind_database(db, t)
        bind_database(db, load_target("rpc-loopback"))  # another name, same identity: fine
    assert (db / TARGET_FILE).read_text() == before  # never rewritten


def test_foreign_identity_is_refused_in_one_line(tmp_path):
    a, b = _target(tmp_path, "a", "haswell"), _target(tmp_path, "b", "skylake-avx512")
    db = tmp_path / "db"
    bind_database(db, a)
    before = (db / TARGET_FILE).read_text()
    with pytest.raises(CosearchError) as e:
        bind_database(db, b)
    msg = str(e.value)
    assert "\n" not in msg and str(db) in msg
    assert "'haswell'" in msg and "'skylake-avx512'" in msg  # both identities named
    assert "avx512f" in msg and "--accept-foreign-schedules" in msg
    assert a.machine_key() in msg and b.machine_key() in msg
    assert (db / TARGET_FILE).read_text() == before


def test_accept_foreign_warns_naming_both(tmp_path):
    a, b = _target(tmp_path, "a", "haswell"), _target(tmp_path, "b", "skylake-avx512")
    db = tmp_path / "db"
    bind_database(db, a)
    with pytest.warns(ForeignSchedulesWarning) as rec:
        bind_database(db, b, accept_foreign=True)
    msg = str(rec[0].message)
    assert issubclass(ForeignSchedulesWarning, UserWarning)
    assert "haswell" in msg and "skylake-avx512" in msg and "used anyway" in msg
    assert read_binding(db)["identity"] == a.identity()  # still bound to the first


def test_mattr_and_arch_differences_are_foreign_cores_only_warn(tmp_path):
    a = _target(tmp_path, "a", "haswell", cores=2)
    db = tmp_path / "db"
    bind_database(db, a)
    with pytest.warns(ForeignSchedulesWarning, match="num-cores 2 vs 8"):
        bind_database(db, _target(tmp_path, "a8", "haswell", cores=8))
    with pytest.raises(CosearchError, match="ISA features differ"):
        bind_database(db, _target(tmp_path, "nofma", "haswell", mattr=["-fma"]))
    with pytest.raises(CosearchError, match="arch 'x86_64' vs 'aarch64'"):
        bind_database(db, load_target("aarch64-linux"))


def test_unreadable_binding_is_a_clear_error(tmp_path):
    db = tmp_path / "db"
    db.mkdir()
    (db / TARGET_FILE).write_text("{torn")
    with pytest.raises(CosearchError, match="unreadable.*delete it"):
        bind_database(db, load_target("host"))
    (db / TARGET_FILE).write_text(json.dumps({"schema": "other/9"}))
    with pytest.raises(CosearchError, match="schema 'other/9'"):
        bind_database(db, load_target("host"))


def test_racing_binders_agree_on_one_identity(tmp_path):
    """Threads bind one new folder to two identities at once (10 rounds): exactly one
    identity wins (hard-link creation), every binder of the other one is refused."""
    a, b = _target(tmp_path, "a", "haswell"), _target(tmp_path, "b", "skylake-avx512")
    a.identity(), b.identity()  # warm the cache so the threads really race on the file
    for round_ in range(10):
        db = tmp_path / f"db{round_}"
        go = threading.Barrier(8)
        outcome: dict[int, str] = {}

        def one(i):
            go.wait()
            try:
                bind_database(db, a if i % 2 else b)
                outcome[i] = "ok"
            except CosearchError:
                outcome[i] = "refused"

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winner = read_binding(db)["name"]
        for i, got in outcome.items():
            assert got == ("ok" if (a if i % 2 else b).name == winner else "refused"), (round_, i, got, winner)
        assert len(outcome) == 8 and sorted(p.name for p in db.iterdir()) == [TARGET_FILE]


def test_default_schedules_dir_is_per_machine_key(tmp_path, monkeypatch):
    monkeypatch.setenv("COSEARCH_SCHEDULES", str(tmp_path / "root"))
    host = load_target("host")
    assert default_schedules_dir(host) == tmp_path / "root" / host.machine_key()
    assert default_schedules_dir(_target(tmp_path, "x", "haswell")) != default_schedules_dir(host)


def test_default_schedules_root_order(tmp_path, monkeypatch):
    from conftest import REPO

    from cosearch import paths

    monkeypatch.delenv("COSEARCH_SCHEDULES", raising=False)
    assert paths.source_checkout() == REPO
    assert paths.default_schedules_root() == REPO / "schedules"  # a writable checkout keeps them in the repo
    monkeypatch.setenv("COSEARCH_SCHEDULES", str(tmp_path / "env"))
    assert paths.default_schedules_root() == tmp_path / "env"  # the variable wins everywhere
    monkeypatch.delenv("COSEARCH_SCHEDULES")
    monkeypatch.setattr(paths, "source_checkout", lambda: None)  # as from an installed wheel
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.default_schedules_root() == tmp_path / "xdg" / "cosearch" / "schedules"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")  # the XDG spec: relative values are invalid
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.default_schedules_root() == tmp_path / "home" / ".local" / "share" / "cosearch" / "schedules"
