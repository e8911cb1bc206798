"""`synchformer predict` on whole videos: a model that sees the cue recovers known offsets in many containers."""

import json
import subprocess
import sys

import numpy as np
import pytest

import synchformer.inference.predict as predict_mod
from synchformer.cli import main
from oracle import OracleSync
from synthetic import FORMATS, make_clip


@pytest.fixture
def oracle(monkeypatch):
    model = OracleSync()
    monkeypatch.setattr(predict_mod, "load_weights", lambda weights=None, **kw: (model, str(weights), []))
    return model


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("offset", [0.6, -0.4])
def test_recovers_known_offsets(tmp_path, oracle, capsys, fmt, offset):
    make_clip(tmp_path / "clip", offset, duration=10.0, fmt=fmt, seed=3)
    path = tmp_path / f"clip{FORMATS[fmt][0]}"
    assert main(["predict", str(path), "-w", "oracle", "--json", "--hop", "0.64"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["schema"] == "synchformer.timeline/1" and out["file"] == str(path)
    assert out["offset_sec"] == pytest.approx(offset, abs=1e-6)
    assert out["confidence"] > 0.5 and out["agreement"] >= 0.8
    starts = [w["start_sec"] for w in out["windows"]]
    assert starts[0] == 0.0 and np.allclose(np.diff(starts[:-1]), 0.64)
    assert out["windows"][-1]["end_sec"] == pytest.approx(out["analysed_sec"], abs=0.33)


def test_drift_is_found_and_reported(tmp_path, oracle, capsys):
    # the sound starts in sync and drifts to 0.9 s early over 48 s (e.g. a wrong frame rate)
    make_clip(tmp_path / "drift", 0.0, duration=48.0, drift_per_min=0.9 / 48 * 60, seed=5, size=(48, 32))
    assert main(["predict", str(tmp_path / "drift.mp4"), "-w", "oracle", "--hop", "0.96", "--json"]) == 0
    drift = json.loads(capsys.readouterr().out)["drift"]
    assert drift["detected"], drift["reason"]
    assert drift["slope_ms_per_min"] == pytest.approx(900 / 48 * 60, rel=0.2)


def test_table_plot_and_bad_files(tmp_path, oracle, capsys):
    make_clip(tmp_path / "a", 0.6, duration=8.0)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    plot = tmp_path / "heat.png"
    code = main(["predict", str(tmp_path / "a.mp4"), str(bad), "-w", "oracle", "--plot", str(plot)])
    captured = capsys.readouterr()
    assert code == 2  # one file failed, the other was still analysed
    assert "offset +0.60 s (audio leads the video by 0.60 s)" in captured.out
    assert captured.err.count("\n") == 1 and str(bad) in captured.err
    written = tmp_path / "heat_a.png"
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a plot never goes over an input
    assert main(["predict", str(tmp_path / "a.mp4"), "-w", "oracle", "--plot", str(tmp_path / "a.mp4")]) == 2
    assert "is an input file" in capsys.readouterr().err


def test_bad_files_answer_before_any_model_loads(tmp_path, monkeypatch, capsys):
    """Every input is checked before seconds of model loading: with none usable, no model is loaded at all;
    with some, the bad ones are named and skipped, and the exit code says so."""
    monkeypatch.setattr(predict_mod, "load_weights", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "text.mp4").write_text("not a video")
    assert main(["predict", str(tmp_path / "missing.mp4"), str(tmp_path / "text.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "missing.mp4: file not found" in err[0] and "text.mp4" in err[1]
    assert main(["predict", str(tmp_path / "missing.mp4")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_bad_input_answers_before_torch_is_imported(tmp_path):
    """The <= 2 s fail-fast target: torch's import alone takes 1.7 s here, so predict, fix, explain, features
    and score must name a missing input before importing it (and before opening the weights, here a 64 MB file)."""
    weights = tmp_path / "big.pt"
    weights.write_bytes(b"\0" * (64 << 20))
    missing = str(tmp_path / "missing.mp4")
    for cmd in (["predict", missing], ["fix", missing, "-o", str(tmp_path / "o.mp4")], ["explain", missing],
                ["features", missing, "-o", str(tmp_path / "f.npy")],
                ["score", missing, "-o", str(tmp_path / "s.csv")]):
        code = ("import sys\nfrom synchformer.cli import main\nassert main(sys.argv[1:]) == 2\n"
                "assert 'torch' not in sys.modules, 'torch was imported'\n"
                "assert 'scipy' not in sys.modules, 'scipy was imported'\n")  # the drift fit's, lazily
        r = subprocess.run([sys.executable, "-c", code, *cmd, "--weights", str(weights)], capture_output=True,
                           text=True)
        assert r.returncode == 0, (cmd, r.stderr)
        assert r.stderr.strip() == f"synchformer: error: {missing}: file not found", cmd


def test_score_with_no_input_that_exists_answers_before_the_model_loads(tmp_path, monkeypatch, capsys):
    from synchformer.cli import score as score_cli

    monkeypatch.setattr(score_cli, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    out = tmp_path / "s.csv"
    assert main(["score", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), "-o", str(out)]) == 2
    assert "none of the 2 videos exists" in capsys.readouterr().err and not out.exists()
