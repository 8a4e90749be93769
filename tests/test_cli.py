import json

import numpy as np

from nnkd.cli import main


def test_demo_distils_and_writes_a_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for model in ("teacher MLP", "1-NN on all rows", "input space", "teacher space", "projection, 16 kB"):
        assert model in text
    report = json.loads((out / "demo.json").read_text())
    rows = {r["model"]: r for r in report["rows"]}
    teacher = rows["teacher MLP (64-128-32-10)"]["accuracy"]
    best = max(r["accuracy"] for k, r in rows.items() if k.startswith("student"))
    assert teacher > 0.93 and best >= teacher - 0.03           # a distilled student close to its teacher
    assert all(r["size_kb"] <= 16.0 for k, r in rows.items() if k.startswith("student"))
    for name in ("demo.md", "accuracy_vs_size.png", "prototypes.png", "student/student.json"):
        assert (out / name).is_file()
    from nnkd import load_student
    assert load_student(out / "student").predict(np.zeros((1, 64))).shape == (1,)


def test_show_config_json(capsys):
    assert main(["show-config", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cext"] is True


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_user_error_is_one_line_exit_1(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("")
    assert main(["demo", "--out", str(target)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nnkd: error:")
