"""One pipeline: the library's predict is the command's, number for number, and a file is opened once per pass."""

from __future__ import annotations

import json

import av
import pytest

import synchformer
import synchformer.io.decode as decode
import synchformer.io.reader as reader
from _shared import MEDIA
from synchformer.cli import main
from synchformer.training.synth import make_sparse_clip

CLIPS = sorted(p for p in MEDIA.glob("*.*") if p.suffix not in (".txt", ".tsv")) if MEDIA.is_dir() else []
KEYS = ("offset_sec", "refined_offset_sec", "confidence", "reliable", "reasons", "windows", "fine", "warnings")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipeline") / "clip.mp4"
    make_sparse_clip(path, 21, duration=12.0, offset_sec=-0.4)
    return path


@pytest.fixture(scope="module")
def models():
    return synchformer.load_models("bundled")  # with its gate and its fine model, as `-w bundled` runs


def _cli(path, capsys) -> dict:
    main(["predict", str(path), "-w", "bundled", "--json"])
    return json.loads(capsys.readouterr().out.splitlines()[-1])


def test_the_library_predicts_what_the_command_prints(clip, models, capsys):
    p = synchformer.predict(clip, weights="bundled")
    assert p.to_dict() == _cli(clip, capsys)
    assert p.refined_offset_sec == pytest.approx(-0.4, abs=0.1) and p.reliable
    assert synchformer.predict(clip, models=models).to_dict() == p.to_dict()  # loaded once, the same numbers
    d = synchformer.decide_fix(p)
    assert d.action == "shift" and d.offset_sec == round(p.refined_offset_sec, 3) and d.audio_stream == 1


@pytest.mark.slow
@pytest.mark.skipif(not CLIPS, reason=f"shared test media not found ({MEDIA})")
@pytest.mark.parametrize("path", CLIPS, ids=[p.name for p in CLIPS])
def test_the_library_and_the_command_agree_on_the_shared_clips(path, models, capsys):
    main(["predict", str(path), "-w", "bundled", "--json"])
    cli = json.loads(capsys.readouterr().out.splitlines()[-1])
    try:
        lib = synchformer.predict(path, models=models).to_dict()
    except synchformer.SynchformerError as e:  # a file predict refuses: the same line
        assert cli["status"] == "error" and cli["error"] == str(e)
        return
    assert {k: lib[k] for k in KEYS} == {k: cli[k] for k in KEYS}
    assert lib == cli


def test_a_clip_is_opened_twice_for_predict_the_check_included(clip, monkeypatch, capsys):
    opened = []
    real = av.open

    def counting(*a, **k):
        opened.append(str(a[0]) if a else "")
        return real(*a, **k)

    for module in (av, decode.av, reader.av):
        monkeypatch.setattr(module, "open", counting)
    d = _cli(clip, capsys)
    assert d["fine"]["windows"] == d["n_used"]  # the fine pass ran, on every pooled window
    assert sum(clip.name in o for o in opened) <= 2, opened  # the check, and one pass (the fine pass: memory)


def test_fix_decides_as_the_library_does(clip, tmp_path, capsys):
    p = synchformer.predict(clip, weights="bundled")
    d = synchformer.decide_fix(p)
    assert main(["fix", str(clip), "-o", str(tmp_path / "fixed.mp4"), "-w", "bundled", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["measured"]["offset_sec"] == d.offset_sec
    again = synchformer.predict(tmp_path / "fixed.mp4", weights="bundled")
    assert abs(again.refined_offset_sec) < 0.045  # fixed: inside BT.1359
    assert synchformer.decide_fix(again).action != "shift"  # nothing left to move (or too little seen to move it)
