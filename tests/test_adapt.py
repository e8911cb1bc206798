"""`synchformer adapt` and `eval DIR`'s footage pass (issue 39): the split by clip, measuring before and after on
the same held-out clips, writing only when better (or forced), the metadata, resuming, the guard rails; names
wherever weights are taken (`init=bundled`); `synth --style workshop`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from synchformer.cli import main
from synchformer.model import load_model
from synchformer.model.checkpoint import read_checkpoint
from synchformer.training.adapt import MIN_CLIPS, Settings, adapt, work_dir_of
from synchformer.training.footage import verdict
from synchformer.training.synth import Cues, make_sparse_clip, synth

OUT_OF_SYNC = {"far_a.mp4": 1.2, "far_b.mp4": -1.0}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """22 in-sync clips of 8 s and two whose sound is 1.2 s early / 1.0 s late (the bundled model's own domain)."""
    root = tmp_path_factory.mktemp("site")
    for i in range(22):
        make_sparse_clip(root / f"c{i:02d}.mp4", seed=3900 + i, duration=8.0, size=48)
    for j, (name, off) in enumerate(OUT_OF_SYNC.items()):
        make_sparse_clip(root / name, seed=3950 + j, duration=8.0, size=48, offset_sec=off)
    return root


def quiet(*_):
    pass


@pytest.mark.slow
def test_adapt_resumes_splits_by_clip_and_writes_with_metadata(site, tmp_path, capsys):
    out = tmp_path / "site.safetensors"
    s = Settings(patience=1, max_minutes=1.0, force=True)
    # stopped (as if killed) 2 steps into the second epoch: the checkpoint of the first epoch's end is there
    first = adapt(site, "bundled", out, s, device="cpu", stop_after=10, progress=False, say=quiet)
    assert first["interrupted"] and not out.exists()
    assert json.loads((work_dir_of(out) / "run" / "checkpoints" / "last.json").read_text())["step"] == 8
    lines = []
    rep = adapt(site, "bundled", out, s, device="cpu", progress=False, say=lines.append)
    assert "resuming from step 8" in capsys.readouterr().out  # the interrupted tuning goes on, not again
    # the two clips that are out of sync are found, listed and left out
    left = {Path(r["path"]).name for r in rep["clips"]["left_out"]}
    assert left == set(OUT_OF_SYNC), rep["clips"]["left_out"]
    assert any("do not look in sync" in x for x in lines)
    tune, held = set(rep["clips"]["tuning"]), set(rep["clips"]["held_out"])
    assert not tune & held and len(tune | held) == 22 and len(held) >= 6  # by clip, every usable clip once
    for k in ("accuracy_1", "accuracy_1_tol1", "loss", "pooled_accuracy_1"):
        assert k in rep["before"] and k in rep["after"]
    assert rep["before"]["windows"] == rep["after"]["windows"] == 8 * len(held)
    assert rep["written"] and out.exists() and not work_dir_of(out).exists()
    meta = read_checkpoint(out).config["adapt"]
    assert meta["base"]["weights"] == "bundled" and len(meta["base"]["sha256"]) == 16
    assert meta["before"] == rep["before"] and meta["after"] == rep["after"]
    assert sorted(meta["clips"]["held_out"]) == sorted(held)
    assert any(x.startswith("held-out clips") for x in lines) and any(x.startswith("wrote ") for x in lines)
    # the file is a model like any other: the same encoders but for the query side of the visual pooling (the
    # default --tune pooling), another sync transformer
    tuned, base = load_model(out).state_dict(), load_model("bundled").state_dict()
    assert meta["settings"]["tune"] == "pooling"
    for k in ("vfeat_extractor.patch_embed_3d.proj.weight", "vfeat_extractor.norm.weight",
              "vfeat_extractor.spatial_attn_agg.norm1.weight", "afeat_extractor.ast.embeddings.cls_token"):
        assert torch.equal(tuned[k], base[k]), k
    qkv = "vfeat_extractor.spatial_attn_agg.self_attn.in_proj_weight"
    assert torch.equal(tuned[qkv][48:], base[qkv][48:]) and not torch.equal(tuned[qkv][:48], base[qkv][:48])
    assert not torch.equal(tuned["transformer.off_head.weight"], base["transformer.off_head.weight"])
    assert main(["predict", str(site / "c00.mp4"), "-w", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["weights"] == str(out)
    assert main(["eval", str(site), "-w", str(out), "--no-footage", "--no-baseline"]) == 0
    assert main(["score", str(site / "c01.mp4"), "-w", str(out), "-o", str(tmp_path / "rows.jsonl")]) == 0
    assert json.loads((tmp_path / "rows.jsonl").read_text().splitlines()[0])["weights"] == str(out)
    assert main(["explain", str(site / "c01.mp4"), "-w", str(out), "-o", str(tmp_path / "why.png")]) == 0


@pytest.mark.slow
def test_adapt_declines_to_write_a_model_that_is_no_better(site, tmp_path, capsys, monkeypatch):
    out = tmp_path / "same.safetensors"
    monkeypatch.chdir(site.parent)  # relative paths, as a user types them
    code = main(["adapt", site.name, "-w", "bundled", "-o", str(out), "--lr", "1e-12", "--max-minutes", "0.5",
                 "--seed", "3", "--device", "cpu", "--tune", "sync"])
    printed = capsys.readouterr().out
    assert code == 0 and not out.exists() and not work_dir_of(out).exists()
    assert "not written: the tuned model is not better on the" in printed and "--force" in printed


def test_adapt_guard_rails_are_one_line_errors_before_work(site, tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    out.write_bytes(b"mine")
    assert main(["adapt", str(site), "-o", str(out), "-w", "bundled"]) == 2
    err = capsys.readouterr().err
    assert "already exists: pass --overwrite" in err and err.count("\n") == 1 and out.read_bytes() == b"mine"
    assert main(["adapt", str(site), "-o", str(tmp_path / "x.pt"), "-w", "bundled"]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err
    assert main(["adapt", str(tmp_path / "nothing"), "-o", str(tmp_path / "y.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["adapt", str(site), "-o", str(tmp_path / "no" / "y.safetensors")]) == 2
    assert "folder does not exist" in capsys.readouterr().err


def test_adapt_too_few_and_too_short_clips(tmp_path, capsys):
    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):
        make_sparse_clip(few / f"c{i}.mp4", seed=i, duration=8.0, size=32)
    make_sparse_clip(few / "short.mp4", seed=9, duration=5.0, size=32)
    assert main(["adapt", str(few), "-o", str(tmp_path / "s.safetensors"), "-w", "bundled", "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert "3 usable clips" in captured.err and f"needs at least {MIN_CLIPS}" in captured.err
    assert "40 clips of 10 s are enough" in captured.err and captured.err.count("\n") == 1
    assert "left out" in captured.out and "short.mp4: too short" in captured.out


def test_weights_names_in_init(tmp_path):
    from synchformer.errors import SynchformerError
    from synchformer.training.config import load_config
    from synchformer.training.loop import build_model

    model = build_model(load_config("sync", None, ["init=bundled", f"out_dir={tmp_path}"]))
    bundled = load_model("bundled")
    assert model.cfg.image_size == bundled.cfg.image_size
    for k, v in bundled.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    with pytest.raises(SynchformerError) as e:  # no network here: one line that names the model and why
        build_model(load_config("sync", None, ["init=audioset", f"out_dir={tmp_path}"]))
    assert "audioset" in str(e.value) and "\n" not in str(e.value)


def test_eval_folder_reports_as_predict_sees_it(tmp_path, capsys):
    folder = tmp_path / "mine"
    synth(folder, 4, seed=5, duration=8.0, size=48, progress=False)
    make_sparse_clip(folder / "short.mp4", seed=1, duration=5.0, size=48)
    report = tmp_path / "r.json"
    assert main(["eval", str(folder), "-w", "bundled", "--json", str(report), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    rep = json.loads(report.read_text())["footage"]
    assert len(rep["clips"]) == 4
    for row in rep["clips"]:
        assert {"offset_sec", "refined_sec", "error_sec", "reliable", "baseline_error_sec"} <= set(row)
    m = rep["model"]
    for k in ("median_abs_error_sec", "p90_abs_error_sec", "wrong", "reliable", "reliable_and_wrong"):
        assert k in m
    assert rep["baseline"]["clips"] == 4
    assert [Path(u["path"]).name for u in rep["unusable"]] == ["short.mp4"] and "too short" in rep["unusable"][0]["why"]
    assert rep["verdict"].startswith(("works on this footage", "tune it: "))
    assert f"verdict: {rep['verdict']}" in printed and "reliable & wrong" in printed
    # its own domain, offsets drawn from the seed: the bundled model finds every one
    assert rep["works"] and m["wrong"] == 0 and m["median_abs_error_sec"] < 0.1


def test_verdict_says_why_to_tune():
    good = {"model": {"wrong": 0.0, "reliable": 0.9, "reliable_and_wrong": 0, "reliable_wrong_share": 0.0,
                      "median_abs_error_sec": 0.02}, "baseline": {"wrong": 0.4}}
    assert verdict(good) == (True, "works on this footage: 100% of clips within 0.2 s, median |error| 20 ms, "
                                   "90% reliable")
    bad = {"model": {"wrong": 0.5, "reliable": 0.3, "reliable_and_wrong": 2, "reliable_wrong_share": 0.4,
                     "median_abs_error_sec": 0.3}, "baseline": {"wrong": 0.2}}
    works, line = verdict(bad)
    assert not works and line.startswith("tune it: the offset is more than 0.2 s off on 50% of clips")
    assert "2 answers marked reliable are wrong" in line and "only 30% of answers are marked reliable" in line
    assert "baseline does better" in line


def test_synth_style_workshop(tmp_path):
    a = synth(tmp_path / "w", 2, seed=1, duration=5.0, size=48, progress=False, cues=Cues(style="workshop"))
    b = synth(tmp_path / "d", 2, seed=1, duration=5.0, size=48, progress=False)
    assert json.loads((a.parent / "synth.json").read_text())["cues"] == {"style": "workshop"}
    assert "cues" not in json.loads((b.parent / "synth.json").read_text())  # the default's folder as it was
    kinds = {k for line in (a.parent / "events.jsonl").read_text().splitlines() for k in json.loads(line)["kinds"]}
    assert kinds <= {"lamp", "press", "drop"} and kinds
    assert (a.parent / "clip_00000.mp4").read_bytes() != (b.parent / "clip_00000.mp4").read_bytes()
    with pytest.raises(ValueError):
        Cues(style="nope")
    assert main(["synth", str(tmp_path / "cli"), "--n", "1", "--duration", "5", "--size", "32", "--style",
                 "workshop"]) == 0


def test_workshop_events_change_the_picture_at_their_frame(tmp_path):
    """Each workshop event (a lamp lighting, a press's sparks, a drop's dust) changes the picture at its own frame
    more than anything else changes it (the swinging arms, the falling box), even at the bundled model's 32 px:
    the first workshop style's presses and drops were little more than motion that stops, which the bundled
    encoders hardly registered (docs/benchmarks.md)."""
    import av
    import numpy as np

    csv = synth(tmp_path / "w", 4, seed=5, duration=5.0, size=96, progress=False, cues=Cues(style="workshop"))
    seen = {}
    for line in (csv.parent / "events.jsonl").read_text().splitlines():
        row = json.loads(line)
        with av.open(str(csv.parent / row["path"])) as f:
            frames = np.stack([fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]).astype(np.float64)
        small = frames.reshape(len(frames), 32, 3, 32, 3, 3).mean(axis=(2, 4))  # 96 -> 32 px
        change = np.abs(np.diff(small, axis=0)).mean(axis=(1, 2, 3))  # change[k]: frame k+1 against frame k
        typical = np.median(change)
        for t, kind in zip(row["events"], row["kinds"]):
            f = round(t * 25)
            seen.setdefault(kind, []).append(change[f - 1] / max(typical, 1e-6))
    assert set(seen) == {"lamp", "press", "drop"}
    assert all(min(r) > 3 for r in seen.values()), {k: [round(x, 1) for x in r] for k, r in seen.items()}


def test_bench_adapt_cost_runs():
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_adapt.py"), "cost", "--config", "tiny",
                          "--clips", "1", "--steps", "1"], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(root)})
    result = json.loads(out.stdout)
    assert result["config"] == "tiny" and set(result["step_sec_batch_32"]) == {"sync", "pooling"}
    assert all(v > 0 for v in result["step_sec_batch_32"].values()) and result["encode_sec_per_clip_best"]["pooling"] >= 0
    assert result["cache_mb_per_clip"]["pooling"] > result["cache_mb_per_clip"]["sync"]


def test_select_on_is_checked():
    from synchformer.errors import SynchformerError
    from synchformer.training.config import load_config

    assert load_config("sync", None, ["select_on=loss"]).select_on == "loss"
    with pytest.raises(SynchformerError, match="select_on must be metric or loss"):
        load_config("sync", None, ["select_on=acc"])
