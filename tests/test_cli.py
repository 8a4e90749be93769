import json

from nnkd.cli import main


def test_demo_prints_a_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "demo.json"
    assert main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for method in ("1-NN (all rows)", "ksu (bound)", "ksu (validation)", "gkn", "hart", "fcnn"):
        assert method in text
    rows = json.loads(out.read_text())
    assert len(rows) == 6
    hart = next(r for r in rows if r["method"] == "hart")
    assert 0 < hart["kept_fraction"] < 0.5 and hart["test_accuracy"] > 0.9


def test_show_config_json(capsys):
    assert main(["show-config", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cext"] is True


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_user_error_is_one_line_exit_1(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("")
    assert main(["demo", "--out", str(target / "x.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nnkd: error:")
