"""One window grid for every command (predict's table, predict --start, explain --start), a verdict on every
result, one way of showing a confidence, a warning that does not cover the plot, and every seed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import synchformer.plots as plots
from synchformer.cli import main
from synchformer.cli.predict import format_report
from synchformer.inference.pooling import summarize
from synchformer.model.bundled import SYNTHETIC_TINY
from synchformer.training.synth import make_sparse_clip

BUNDLED = ["-w", str(SYNTHETIC_TINY)]
GRID = np.round(np.linspace(-2, 2, 21), 2)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("grid") / "clip.mp4"
    make_sparse_clip(path, 11, duration=8.0, offset_sec=0.4)
    return path


def test_a_window_of_predict_is_the_window_of_start_and_of_explain(clip, capsys):
    assert main(["predict", str(clip), *BUNDLED, "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    row = whole["windows"][2]
    assert (row["start_sec"], row["end_sec"]) == (1.28, 6.08)
    assert main(["predict", str(clip), *BUNDLED, "--json", "--start", "1.28"]) == 0
    one = json.loads(capsys.readouterr().out)
    # a verdict and the schema, as every result has
    assert one["schema"] == "synchformer.timeline/1" and isinstance(one["reliable"], bool) and "reasons" in one
    [w] = one["windows"]
    assert (w["start_sec"], w["end_sec"]) == (1.28, 6.08)
    assert w["probability"] == pytest.approx(row["probability"], abs=1e-4) and w["offset_sec"] == row["offset_sec"]
    assert main(["explain", str(clip), *BUNDLED, "--json", "--start", "1.28", "--segments-only"]) == 0
    ex = json.loads(capsys.readouterr().out)
    assert ex["window"] == {"start_sec": 1.28, "end_sec": 6.08}
    assert ex["offset_sec"] == row["offset_sec"]
    assert main(["predict", str(clip), *BUNDLED, "--start", "1.28"]) == 0
    text = capsys.readouterr().out
    assert "one window, 1.28-6.08 s" in text and ("reliable" in text or "NOT RELIABLE" in text)


def test_a_confidence_reads_the_same_in_the_result_and_in_its_reasons():
    p = np.full(21, (1 - 0.178) / 20)
    p[10] = 0.178  # 0.178: rounded 0.18, compared as 0.17
    s = summarize([0.0], p[None], GRID)
    assert s.reasons[0] == "confidence 0.17 below 0.35"
    text = format_report({**s.to_dict(), "file": "x.mp4", "analysed_sec": 4.8, "hop_sec": 0.64, "warnings": [],
                          "sampled": None})
    assert "confidence 0.17," in text and "confidence 0.18" not in text and "(confidence 0.17" in s.message


@pytest.mark.parametrize("repeat", [1, 4])
def test_the_warning_line_clears_the_axis_labels(tmp_path, monkeypatch, repeat):
    from synchformer.plots.heatmap import plot_heatmap

    starts = np.arange(0, 8, 0.64)
    probs = np.random.default_rng(0).dirichlet(np.ones(21), len(starts))
    drawn = []
    real = plots.warning_line

    def spy(fig, warning, **kw):
        drawn.append((fig, real(fig, warning, **kw)))
        return drawn[-1][1]

    monkeypatch.setattr(plots, "warning_line", spy)
    warning = "using the bundled model, trained on synthetic clips only; pass --weights FILE " * repeat
    plot_heatmap(starts, probs, GRID, summarize(starts, probs, GRID), tmp_path / "h.png", warning=warning)
    fig, text = drawn[0]
    r = fig.canvas.get_renderer()
    line = text.get_window_extent(r)
    assert 0 <= line.x0 and line.x1 <= fig.bbox.width  # wrapped inside the figure
    for ax in fig.axes:
        assert ax.get_tightbbox(r).y0 > line.y1, ax.get_xlabel()  # plots, ticks and labels above it


@pytest.mark.parametrize("seed", [8_800_017, 10**30, -5])
def test_every_seed_makes_samples_and_clips(seed, tmp_path):
    from synchformer.training.data import sample_generator
    from synchformer.training.synth import clip_seed, crop_row, make_sparse_clip as make

    g = sample_generator(seed, 3, 17)
    assert 0 <= float(np.asarray(__import__("torch").rand(1, generator=g))[0]) < 1
    crop_row(clip_seed(seed, 0), 10.0)
    make(tmp_path / "c.mp4", clip_seed(seed, 0), duration=5.0, size=32)
    assert (tmp_path / "c.mp4").stat().st_size > 0


def test_eval_on_a_folder_takes_a_large_seed(clip, tmp_path, capsys):
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(clip.read_bytes())
    assert main(["eval", str(folder), *BUNDLED, "--seed", "8800017"]) == 0
    assert "accuracy_1" in capsys.readouterr().out
