import csv
import json
import subprocess
import sys

from cosearch.cli import main

GOOD = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def test_cli_estimate_naswot_sample_writes_columns_and_config(tmp_path):
    out = tmp_path / "x.csv"
    r = subprocess.run([sys.executable, "-m", "cosearch", "estimate", "--space", "nb201", "--estimator", "naswot",
                        "--sample", "3", "--seed", "0", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["arch", "score", "naswot", "naswot_singular", "seconds"]
    assert len(rows) == 3 and all(float(x["score"]) == float(x["naswot"]) for x in rows)
    cfg = json.loads((tmp_path / "x.config.json").read_text())
    assert cfg["estimator"]["estimator"] == "naswot" and cfg["seed"] == 0 and cfg["n_archs"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.config.json", "x.csv"]  # no temp leftovers


def test_cli_bad_arch_names_edge_exit_2(tmp_path, capsys):
    archs = tmp_path / "a.txt"
    bad = GOOD.replace("nor_conv_1x1~1", "conv_5x5~1")
    archs.write_text(f"# header comment\n{GOOD}\n\n{bad}\n")
    out = tmp_path / "x.csv"
    rc = main(["estimate", "--space", "nb201", "--estimator", "params", "--archs", str(archs), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "edge 1->3" in err and "conv_5x5" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_bad_inputs_exit_2(tmp_path, capsys):
    out = str(tmp_path / "x.csv")
    assert main(["estimate", "--space", "nb201", "--estimator", "nope", "--sample", "1", "--out", out]) == 2
    assert "valid estimators" in capsys.readouterr().err
    assert main(["estimate", "--space", "nb201", "--estimator", "params", "--sample", "0", "--out", out]) == 2
    assert "--sample must be a positive integer" in capsys.readouterr().err
    table = tmp_path / "t.csv"
    table.write_text("arch,accuracy\n")
    archs = tmp_path / "a.txt"
    archs.write_text(GOOD + "\n")
    assert main(["estimate", "--space", "nb201", "--estimator", f"table:{table}", "--archs", str(archs),
                 "--out", out]) == 2
    assert "is not in table" in capsys.readouterr().err


def test_cli_estimate_mbv2_naswot_and_records_fallback_on_plugin_space(tmp_path):
    import sys as _sys
    from pathlib import Path

    _sys.path.insert(0, str(Path(__file__).resolve().parent))
    import plugins.tiny_space  # noqa: F401  registers "tiny"

    out = tmp_path / "m.csv"
    assert main(["estimate", "--space", "mbv2", "--estimator", "naswot", "--sample", "2", "--seed", "1",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 and all(float(r["naswot_singular"]) == 0.0 for r in rows)
    cfg = json.loads((tmp_path / "m.config.json").read_text())
    assert cfg["applied"]["absolute"] is True and cfg["applied"]["fidelities"] == ["zero-cost"]
    out = tmp_path / "t.csv"
    assert main(["estimate", "--space", "tiny", "--estimator", "zc-all", "--sample", "3", "--seed", "0",
                 "--out", str(out)]) == 0
    cfg = json.loads((tmp_path / "t.config.json").read_text())
    assert cfg["applied"]["mode"] == "rank-fallback" and cfg["applied"]["fit_on"][0]["space"] == "nb201"
    assert cfg["estimator"]["foreign"] == "rank"
