"""Schedule database: concurrent writers from two real processes, tolerant reading."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import warnings

import pytest

from cosearch.compile.storage.database import (
    RECORD_FILE,
    WORKLOAD_FILE,
    DatabaseWarning,
    merge_records,
    open_database,
)

# Real MetaSchedule workloads (matmuls of different sizes) and records with real
# traces; a writer process commits one record per merge call, many calls, so
# the two writers' appends interleave.
WRITER = textwrap.dedent(
    """
    import sys, time
    import tvm
    from tvm import te
    from tvm.s_tir import meta_schedule as ms
    from cosearch.compile.storage.database import merge_records

    def workload(n):
        a = te.placeholder((n, n), name="A"); b = te.placeholder((n, n), name="B")
        k = te.reduce_axis((0, n), name="k")
        c = te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
        return tvm.IRModule({"main": te.create_prim_func([a, b, c])})

    def record(n, us):
        mod = workload(n)
        sch = tvm.s_tir.Schedule(mod)
        blk = sch.get_sblock("C")
        i, j, k = sch.get_loops(blk)
        sch.parallel(i)
        return ms.database.TuningRecord(
            sch.trace, ms.database.Workload(mod), [us * 1e-6], tvm.target.Target("llvm"),
            ms.arg_info.ArgInfo.from_prim_func(mod["main"]),
        )

    db_dir, sizes, start = sys.argv[1], [int(s) for s in sys.argv[2].split(",")], float(sys.argv[3])
    recs = [record(n, 10.0 + r) for r in range(5) for n in sizes]
    while time.time() < start:
        time.sleep(0.01)
    for r in recs:
        merge_records(db_dir, [r])
    print(len(recs))
    """
)


def _write(tmp_path, db_dir, sizes: str, start: float) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.Popen([sys.executable, str(script), str(db_dir), sizes, str(start)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def two_writer_db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dbw")
    db_dir = tmp / "schedules" / "host"  # does not exist yet: created on demand
    start = time.time() + 6.0  # both processes have imported TVM by then
    procs = [_write(tmp, db_dir, "8,16,24", start), _write(tmp, db_dir, "16,32,40", start)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    return db_dir, sum(int(o.strip()) for o, _ in outs)


@pytest.fixture
def db_copy(two_writer_db, tmp_path):
    """A private copy of the two-writer database, for tests that damage it."""
    import shutil

    d = tmp_path / "db"
    shutil.copytree(two_writer_db[0], d)
    return d


def _count(db) -> int:
    return len(db.get_all_tuning_records())


def _open_all(d):
    return open_database(d, best_only=False)


def test_two_processes_writing_keep_every_record(two_writer_db):
    from tvm.s_tir import meta_schedule as ms

    db_dir, written = two_writer_db
    assert written == 30
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatabaseWarning)  # nothing torn or corrupt
        db = _open_all(db_dir)
    assert _count(db) == 30
    best = open_database(db_dir)  # default: the best record of each of the 5 workloads
    assert _count(best) == 5
    assert sorted(round(float(r.run_secs[0]) * 1e6, 3) for r in best.get_all_tuning_records()) == [10.0] * 5
    # shared size 16 is one workload line, not two: 5 distinct matmuls
    assert len((db_dir / WORKLOAD_FILE).read_text().splitlines()) == 5
    # and MetaSchedule's own reader accepts the files and sees the same records
    stock = ms.database.JSONDatabase(work_dir=str(db_dir), module_equality="anchor-block")
    assert len(stock.get_all_tuning_records()) == 30


def test_torn_last_line_and_garbage_middle_line_are_skipped(db_copy):
    d = db_copy
    rpath = d / RECORD_FILE
    lines = rpath.read_text().splitlines()
    lines.insert(10, "{{{ garbage not json")
    torn = lines[-1][: len(lines[-1]) // 2]  # a writer died mid-line: no newline
    rpath.write_text("\n".join(lines[:-1] + [torn]))
    with pytest.warns(DatabaseWarning) as got:
        db = _open_all(d)
    msgs = [str(w.message) for w in got]
    assert any(f"{rpath}:11:" in m for m in msgs), msgs  # the garbage line, by number
    assert any(f"{rpath}:{len(lines)}:" in m for m in msgs), msgs  # the torn last line
    assert _count(db) == 29  # 30 records, the torn one lost, the garbage one ignored

    # the next writer ends the torn line first; its record is readable afterwards
    rec = db.get_all_tuning_records()[0]
    assert merge_records(d, [rec]) == 1
    with pytest.warns(DatabaseWarning):
        assert _count(_open_all(d)) == 30


def test_corrupt_workload_line_drops_only_its_records(db_copy):
    d = db_copy
    wpath = d / WORKLOAD_FILE
    wl = wpath.read_text().splitlines()
    wl[1] = '["0x0", "bm90IGEgbW9kdWxl"]'  # valid JSON, not a module
    wpath.write_text("\n".join(wl) + "\n")
    import json

    of_1 = sum(json.loads(r)[0] == 1 for r in (d / RECORD_FILE).read_text().splitlines())
    assert of_1 >= 5
    with pytest.warns(DatabaseWarning, match=str(wpath)):
        db = _open_all(d)
    assert _count(db) == 30 - of_1  # records of workload 1 are skipped, the rest load


def test_failed_runs_do_not_count_as_schedules(two_writer_db, tmp_path):
    from tvm.s_tir import meta_schedule as ms

    src, _ = two_writer_db
    rec = _open_all(src).get_all_tuning_records()[0]
    failed = ms.database.TuningRecord(rec.trace, rec.workload, [1e10], rec.target, rec.args_info)
    d = tmp_path / "db"
    assert merge_records(d, [failed]) == 0  # nothing usable to write
    assert _count(open_database(d)) == 0 and not open_database(d).has_workload(rec.workload.mod)
    assert merge_records(d, [rec]) == 1 and open_database(d).has_workload(rec.workload.mod)


def test_database_path_that_is_a_file(tmp_path):
    from cosearch.errors import CosearchError

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CosearchError, match="is a file"):
        open_database(f)
