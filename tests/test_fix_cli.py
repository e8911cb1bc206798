"""`synchformer fix`: measure, move the audio, and the corrected copy measures about 0 s."""

import json

import pytest

import synchformer.inference.predict as predict_mod
from synchformer.cli import main
from oracle import OracleSync
from synthetic import make_clip


@pytest.fixture
def oracle(monkeypatch):
    model = OracleSync()
    monkeypatch.setattr(predict_mod, "load_weights", lambda weights=None, **kw: (model, str(weights), []))
    return model


@pytest.mark.parametrize("fmt,ext,offset", [("mp4-h264-aac", ".mp4", 0.6), ("webm-vp8-opus", ".webm", -0.8),
                                            ("avi-mjpeg-mp3", ".avi", 1.2)])
def test_measure_fix_and_measure_again(tmp_path, oracle, capsys, fmt, ext, offset):
    make_clip(tmp_path / "clip", offset, duration=10.0, fmt=fmt, seed=2)
    src, dst = tmp_path / f"clip{ext}", tmp_path / f"fixed{ext}"
    before = src.read_bytes()
    assert main(["fix", str(src), "-o", str(dst), "-w", "oracle", "--json", "--hop", "0.64"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["measured"]["offset_sec"] == pytest.approx(offset)
    assert report["audio_shift_sec"] == pytest.approx(offset, abs=1e-3)
    assert src.read_bytes() == before
    assert main(["predict", str(dst), "-w", "oracle", "--json", "--hop", "0.64"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["offset_sec"] == pytest.approx(0.0, abs=1e-6) and again["agreement"] >= 0.8


def test_given_offset_and_refusals(tmp_path, oracle, capsys):
    make_clip(tmp_path / "clip", 0.4, duration=8.0)
    src = tmp_path / "clip.mp4"
    assert main(["fix", str(src), "-o", str(tmp_path / "out.mp4"), "--offset", "0.4"]) == 0
    assert "audio delayed by 0.400 s (remux)" in capsys.readouterr().out
    assert main(["fix", str(src), "-o", str(src), "--offset", "0.4"]) == 2  # never over the input
    assert main(["fix", str(src), "-o", str(tmp_path / "out.mp4"), "--offset", "0.4"]) == 2  # exists
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Traceback" not in err
    assert main(["fix", str(src), "-o", str(tmp_path / "out.mp4"), "--offset", "0.4", "--overwrite"]) == 0
