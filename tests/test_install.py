"""cosearch as an installed package (a wheel, not the source checkout): the built-in
targets ship inside it, and schedules go to the user's data folder, never under
site-packages.

Builds the wheel from a copy of the sources, installs it (no dependencies) into a
fresh venv that sees the running environment's packages (so tvm / torch need no
download), then runs the installed ``cosearch`` from a temp folder with HOME and
the XDG folders pointed at temp dirs.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from conftest import REPO, make_tiny_conv_onnx

pytestmark = pytest.mark.tvm

SOURCES = ("cosearch", "targets", "pyproject.toml", "setup.py", "README.md")


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-3000:])
    return r


def _files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, venv bin dir, wheel path, root temp dir, venv site-packages)."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:  # build from a copy: no build/ or egg-info in the checkout
        s = REPO / name
        if s.is_dir():
            shutil.copytree(s, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(s, src / name)
    setuptools_ok = int(metadata.version("setuptools").split(".")[0]) >= 68
    _run([sys.executable, "-m", "pip", "wheel", src, "-w", root / "whl", "--no-deps", "-q",
          *(["--no-build-isolation"] if setuptools_ok else [])])
    (wheel,) = (root / "whl").glob("cosearch-*.whl")

    venv = root / "venv"  # without pip (creating it with pip costs ~10 s): the running pip installs into it
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv])
    py = venv / "bin" / "python"
    inner_site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # --system-site-packages exposes the *base* interpreter's packages; when the tests
    # themselves run in a venv (CI), expose its site-packages too -- as plain paths, so
    # its .pth files (an editable cosearch) are not processed.
    outer = [p for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]} if Path(p).is_dir()]
    (inner_site / "zz_outer_env.pth").write_text("".join(f"{p}\n" for p in outer))
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--force-reinstall", "--no-index",
          "-q", wheel])
    return py, venv / "bin", wheel, root, inner_site


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "COSEARCH_SCHEDULES", "COSEARCH_TARGETS_DIR", "XDG_CONFIG_HOME")}
    env.update(HOME=str(root / "home"), XDG_DATA_HOME=str(root / "data"), PYTHONDONTWRITEBYTECODE="1")
    return env


def test_wheel_carries_targets_not_repo_folders(installed):
    _, _, wheel, _, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).stem for n in names if n.startswith("cosearch/_targets/") and n.endswith(".json")}
    assert shipped == {p.stem for p in (REPO / "targets").glob("*.json")} and "host" in shipped
    assert "cosearch/estimate/models/zc_xgb.json" in names
    assert not [n for n in names if n.split("/")[0] in ("targets", "schedules", "tests", "bench")]


def test_installed_cosearch_lists_targets_and_tunes_into_user_data_dir(installed):
    py, bindir, _, root, inner_site = installed
    work = root / "work"
    work.mkdir()
    env = _env(root)
    where = _run([py, "-c", "import cosearch, cosearch.paths as p; print(cosearch.__file__); "
                  "print(p.source_checkout()); print(p.builtin_targets_dir()); "
                  "from cosearch.compile.target import load_target; print(load_target('host').machine_key())"],
                 cwd=work, env=env).stdout.split()
    assert Path(where[0]).is_relative_to(inner_site), where  # the wheel, not the checkout
    assert where[1] == "None" and Path(where[2]) == inner_site / "cosearch" / "_targets"
    key = where[3]

    listed = _run([bindir / "cosearch", "targets"], cwd=work, env=env).stdout
    host_row = next(ln for ln in listed.splitlines() if ln.startswith("host "))
    assert "built-in" in host_row and "yes" in host_row
    assert f"built-in {inner_site / 'cosearch' / '_targets'}" in listed

    before = _files(inner_site)
    onnx_path = work / "tiny.onnx"
    make_tiny_conv_onnx(onnx_path)
    r = _run([bindir / "cosearch", "tune", onnx_path, "--target", "host", "--trials", "4", "--out", work / "out"],
             cwd=work, env=env)
    db = root / "data" / "cosearch" / "schedules" / key
    assert (db / "target.json").is_file(), (sorted(_files(root / "data")), r.stdout[-2000:])
    assert (db / "database_workload.json").stat().st_size > 0  # tuned records landed in the user data dir
    assert (work / "out" / "meta.json").is_file() and (work / "out" / "model.so").is_file()
    assert _files(inner_site) == before  # nothing written under site-packages
    assert sorted(p.name for p in work.iterdir()) == ["out", "tiny.onnx"]  # nor in the working folder
