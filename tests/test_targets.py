"""Target files: every shipped file loads and resolves; bad files and names fail clearly."""

from __future__ import annotations

import json
import os
import re

import pytest

from cosearch.cli import main
from cosearch.compile.target import list_targets, load_target
from cosearch.compile.target.spec import _identity_json
from cosearch.errors import CosearchError
from cosearch.paths import builtin_targets_dir


@pytest.fixture(autouse=True)
def _no_user_targets(tmp_path_factory, monkeypatch):
    """Tests see the built-in targets only, never the developer's own ~/.config ones."""
    monkeypatch.delenv("COSEARCH_TARGETS_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))

REQUIRED = {"host", "x86-64-avx2", "x86-64-avx512", "aarch64-linux", "cuda-sm90", "rpc-loopback"}


def test_every_target_file_loads_and_resolves():
    specs = {s.name: s for s in list_targets()}
    assert REQUIRED <= set(specs)
    for s in specs.values():
        json.dumps(s.to_dict())  # resolved form is JSON
        s.tvm_target()  # TVM accepts it
        assert s.measure in ("local", "rpc", "none") and s.export in ("so", "tar")
        assert (s.rpc is not None) == (s.measure == "rpc")
    host = specs["host"]
    assert host.target["mcpu"] != "native" and host.target["num-cores"] == os.cpu_count()
    assert host.measure == "local" and host.runs_here()[0]
    assert specs["rpc-loopback"].rpc.tracker_port == 9190 and specs["rpc-loopback"].rpc.key == "cosearch-loopback"
    cuda = specs["cuda-sm90"]
    assert cuda.measure == "none" and "sm_90" in str(cuda.tvm_target()) and cuda.tvm_target().host is not None
    arm = specs["aarch64-linux"]
    assert arm.runs_here()[0] is False and arm.target["mtriple"] == "aarch64-linux-gnu"


def test_unknown_name_lists_valid_ones():
    with pytest.raises(CosearchError) as e:
        load_target("no-such-target")
    msg = str(e.value)
    assert "'no-such-target'" in msg and all(n in msg for n in REQUIRED) and "\n" not in msg


def test_user_path_and_env_substitution(tmp_path, monkeypatch):
    raw = json.loads((builtin_targets_dir() / "aarch64-linux.json").read_text())
    p = tmp_path / "my-board.json"
    p.write_text(json.dumps(raw))
    monkeypatch.setenv("COSEARCH_AARCH64_TRACKER_PORT", "9555")
    monkeypatch.setenv("COSEARCH_AARCH64_KEY", "pi5")
    s = load_target(str(p))
    assert s.name == "my-board" and s.rpc.tracker_port == 9555 and s.rpc.key == "pi5"
    assert s.rpc.tracker_host == "127.0.0.1"  # the ${VAR:-default} default
    assert s.export == "tar" or s.cc is not None


def _write(d, name, target, **extra):
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.json").write_text(json.dumps({"target": target, "measure": "none", **extra}))


def test_resolution_order_env_then_user_then_builtin(tmp_path, monkeypatch):
    env, user = tmp_path / "env", tmp_path / "xdg" / "cosearch" / "targets"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    _write(user, "host", {"kind": "llvm", "mcpu": "haswell"}, description="user host")
    _write(user, "mine", {"kind": "llvm"}, description="user only")
    _write(user, "both", {"kind": "llvm"}, description="from user")
    specs = {s.name: s for s in list_targets()}
    assert REQUIRED <= set(specs) and "mine" in specs  # built-ins stay listed beside user targets
    assert specs["host"].origin == "user" and specs["host"].description == "user host"  # user shadows built-in
    assert specs["x86-64-avx2"].origin == "built-in"
    assert specs["x86-64-avx2"].path.parent == builtin_targets_dir().resolve()

    monkeypatch.setenv("COSEARCH_TARGETS_DIR", str(env))
    _write(env, "both", {"kind": "llvm"}, description="from env")
    assert load_target("both").description == "from env" and load_target("both").origin == "env"
    assert load_target("mine").origin == "user" and load_target("cuda-sm90").origin == "built-in"
    assert load_target(str(user / "both.json")).origin == "file"  # a path is read as is
    with pytest.raises(CosearchError) as e:
        load_target("nowhere")
    msg = str(e.value)
    assert "'nowhere'" in msg and "both" in msg and "mine" in msg and str(env) in msg and str(user) in msg


def test_identity_and_machine_key():
    host = load_target("host")
    ident = host.identity()
    assert ident["kind"] == "llvm" and ident["mcpu"] == host.target["mcpu"] and ident["num-cores"] == os.cpu_count()
    assert ident["features"] == sorted(ident["features"]) and ident["features"]
    assert all(not f.startswith(("slow-", "fast-", "tuning-")) for f in ident["features"])  # ISA only
    key = host.machine_key()
    assert key.startswith(f"host--{ident['mcpu']}-{os.cpu_count()}c-") and len(key.rsplit("-", 1)[1]) == 8
    assert re.fullmatch(r"[A-Za-z0-9._-]+", key)
    # the same identity under another name: same hash, other prefix; another mcpu: another hash
    assert load_target("rpc-loopback").machine_key().rsplit("-", 1)[1] == key.rsplit("-", 1)[1]
    assert load_target("x86-64-avx2").machine_key().rsplit("-", 1)[1] != load_target("x86-64-avx512").machine_key().rsplit("-", 1)[1]
    arm = load_target("aarch64-linux")
    assert arm.identity()["arch"] == "aarch64" and "neon" in arm.identity()["features"]
    assert arm.machine_key().startswith("aarch64-linux--aarch64-4c-")
    cuda = load_target("cuda-sm90").identity()
    assert cuda["kind"] == "cuda" and cuda["arch"] == "sm_90" and cuda["host"]["kind"] == "llvm"


def test_fixed_target_key_is_the_same_on_every_machine(tmp_path):
    """A fixed target dict does not depend on the host: its key is a constant (changing
    how keys are computed orphans every user's schedule folders; with pinned TVM/LLVM)."""
    p = tmp_path / "x86-64-avx512.json"
    p.write_text(json.dumps({"target": {"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 4}}))
    assert load_target(str(p)).machine_key() == "x86-64-avx512--skylake-avx512-4c-2bb1115f"
    odd = tmp_path / "my board (v2).json"
    odd.write_text(json.dumps({"target": {"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 4,
                                          "mattr": ["-avx512f"]}}))
    key = load_target(str(odd)).machine_key()
    assert key.startswith("my_board_v2--skylake-avx512-4c-") and not key.endswith("2bb1115f")  # mattr counts


def test_identity_is_computed_once_per_target_dict():
    host = load_target("host")
    host.identity()
    before = _identity_json.cache_info()
    for _ in range(5):
        host.identity(), host.machine_key()
    after = _identity_json.cache_info()
    assert after.misses == before.misses and after.hits >= before.hits + 10
    ident = host.identity()
    ident["features"].append("mutated")  # callers get a copy, the cache is not shared state
    assert "mutated" not in host.identity()["features"]


@pytest.mark.parametrize(
    "content, needles",
    [
        ("{not json", ["not valid JSON"]),
        ('["a list"]', ["expected a JSON object"]),
        ('{"target": {"kind": "llvm"}, "measure": "remote"}', ["'measure'", "'remote'", "local, rpc, none"]),
        ('{"target": {"kind": "llvm"}, "colour": 1}', ["unknown field", "colour", "accepted fields"]),
        ('{"target": {"kind": "llvm"}, "measure": "rpc"}', ["'rpc'", "required when measure is 'rpc'"]),
        ('{"target": {"kind": "llvm", "num-cores": 0}}', ["'target'", "num-cores"]),
        ('{"target": {"kind": "llvm", "mcpu": "haswel"}}', ["'target'", "haswel", "LLVM CPU name"]),
        ('{"target": {"kind": "llvmx"}}', ["'target'", "llvmx"]),
        ('{"target": {"kind": "llvm", "mcpu_typo": "x"}}', ["'target'", "mcpu_typo"]),
        ('{"target": {"kind": "llvm"}, "threads": -2}', ["'threads'", "-2", "positive integer"]),
        ('{"target": {"kind": "llvm"}, "export": "zip"}', ["'export'", "'zip'", "so, tar, auto"]),
        (
            '{"target": {"kind": "llvm"}, "measure": "rpc", "rpc": {"tracker_host": "h", "tracker_port": "${NO_SUCH_VAR_X}", "key": "k"}}',
            ["rpc.tracker_port", "NO_SUCH_VAR_X"],
        ),
        (
            '{"target": {"kind": "llvm"}, "measure": "rpc", "rpc": {"tracker_host": "h", "tracker_port": 70000, "key": "k"}}',
            ["rpc.tracker_port", "70000", "1..65535"],
        ),
    ],
)
def test_malformed_file_gives_clear_error(tmp_path, content, needles):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(CosearchError) as e:
        load_target(str(p))
    msg = str(e.value)
    assert str(p) in msg and "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(CosearchError, match="does not exist"):
        load_target(str(tmp_path / "nope.json"))


def test_cli_lists_and_shows(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for n in REQUIRED:
        assert n in out
    assert "rpc 127.0.0.1:9190 key=cosearch-loopback" in out
    host_row = next(ln for ln in out.splitlines() if ln.startswith("host "))
    assert "built-in" in host_row and "SOURCE" in out and "searched, first match wins: user " in out
    assert main(["targets", "show", "host"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == "host" and shown["target"]["kind"] == "llvm" and shown["runs_here"]["ok"] is True
    assert shown["origin"] == "built-in" and shown["machine_key"] == load_target("host").machine_key()
    assert shown["identity"] == load_target("host").identity()


def test_cli_unknown_target_is_one_line_exit_2(capsys):
    assert main(["targets", "show", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown target 'nope'" in err[0] and "host" in err[0]
