"""`synchformer explain`: occlusion and gradient attribution, the figure, the command (tiny random model)."""

import json
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from synchformer.cli import main
from synchformer.errors import SynchformerError
from synchformer.inference import predict_window
from synchformer.inference.explain import attribute, baseline_tokens, explain_window
from synchformer.plots.explain import save_figure
from synchformer.model import ModelConfig, Synchformer, save_model
from _shared import MEDIA

PEN = MEDIA / "pen_hits_coin__node-opencv_motion.mov"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Synchformer(ModelConfig.tiny()).eval()


def write_clip(path, seconds=5.2, clap_sec=2.5, size=64):
    """Grey frames with a slow drift, one white flash at `clap_sec` and one click there in faint noise."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=25)
        vs.width = vs.height = size
        vs.pix_fmt = "yuv420p"
        aus = out.add_stream("pcm_s16le", rate=16000, layout="mono")
        for i in range(round(seconds * 25)):
            img = np.full((size, size, 3), 60 + i % 40, np.uint8)
            if abs(i / 25 - clap_sec) < 0.05:
                img[:] = 250
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        wave = (rng.standard_normal(round(seconds * 16000)) * 0.01).astype(np.float32)
        c = round(clap_sec * 16000)
        wave[c:c + 800] += 0.8 * np.exp(-np.arange(800) / 150) * np.sign(rng.standard_normal(800))
        pcm = (np.clip(wave, -1, 1) * 32767).astype(np.int16)
        for i in range(0, len(pcm), 1024):
            frame = av.AudioFrame.from_ndarray(pcm[None, i:i + 1024], format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, i, Fraction(1, 16000)
            for p in aus.encode(frame):
                out.mux(p)
        for p in aus.encode(None):
            out.mux(p)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("explain") / "clap.mov")


@pytest.fixture(scope="module")
def weights(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_model(model, path)
    return path


def features(seed=0, same_visual=False):
    """Encoder features of one window; with `same_visual`, every segment's visual tokens identical."""
    g = torch.Generator().manual_seed(seed)
    v, a = torch.randn(14, 8, 32, generator=g), torch.randn(14, 6, 32, generator=g)
    return (v[:1].expand(14, -1, -1).clone() if same_visual else v), a


def test_baseline_is_the_mean_of_the_other_segments():
    x = torch.randn(14, 8, 5, dtype=torch.float64)
    expected = torch.stack([torch.cat([x[:s], x[s + 1:]]).mean(0) for s in range(14)])
    torch.testing.assert_close(baseline_tokens(x), expected)
    same = x[:1].expand(14, -1, -1).float()
    assert torch.equal(baseline_tokens(same), same)  # bit for bit: equal segments are not "occluded"


def test_occlusion_shapes_zeros_and_nonzeros(model):
    v, a = features(same_visual=True)
    att = attribute(model, v, a)
    with torch.no_grad():
        logits = model.compare_v_a(v[None], a[None])[0]
    torch.testing.assert_close(att.logits, logits)
    assert att.target == int(logits.argmax()) and att.method == "occlusion"
    assert att.visual_segment.shape == att.audio_segment.shape == (14,)
    assert att.visual_token.shape == (14, 8) and att.audio_token.shape == (14, 6)
    # identical segments: replacing one by the mean of the others changes nothing -> exactly 0
    assert (att.visual_segment == 0).all() and (att.visual_token == 0).all()
    assert (att.audio_segment != 0).all() and (att.audio_token != 0).all()

    # occluding a segment by hand gives its score; a chosen target changes the scores
    v2, a2 = features(seed=1)
    att = attribute(model, v2, a2, target=3, tokens=False)
    assert att.target == 3 and att.visual_token is None
    with torch.no_grad():
        pv, pa = model.vproj(v2), model.aproj(a2)
        occluded = pa.clone()
        occluded[5] = torch.cat([pa[:5], pa[6:]]).mean(0)
        lp = lambda vv, aa: model.transformer(vv.flatten(0, 1)[None], aa.flatten(0, 1)[None]).log_softmax(-1)[0, 3]
        assert float(lp(pv, pa) - lp(pv, occluded)) == pytest.approx(float(att.audio_segment[5]), abs=1e-5)
    assert (att.visual_segment != 0).all()


def test_a_centred_model_is_explained_on_what_it_reads():
    """With center_segments, tokens added to every segment change neither the decision nor its explanation."""
    centred = Synchformer(ModelConfig.tiny(center_segments=True)).eval()
    v, a = features(seed=2)
    shifted = attribute(centred, v + 5, a - 5, tokens=False)
    plain = attribute(centred, v, a, tokens=False)
    with torch.no_grad():
        torch.testing.assert_close(shifted.logits, centred.compare_v_a(v[None], a[None])[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shifted.audio_segment, plain.audio_segment, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(shifted.visual_segment, plain.visual_segment, atol=1e-4, rtol=1e-4)


def test_gradient_matches_finite_differences(model):
    m = Synchformer(ModelConfig.tiny()).double().eval()
    m.load_state_dict(model.state_dict())
    v, a = (x.double() for x in features(seed=2))
    att = attribute(m, v, a, method="gradient", target=7)
    assert att.method == "gradient" and att.visual_token.shape == (14, 8) and att.audio_token.shape == (14, 6)
    torch.testing.assert_close(att.visual_segment, att.visual_token.sum(1))

    with torch.no_grad():
        pv, pa = m.vproj(v), m.aproj(a)
        bv, ba = baseline_tokens(pv), baseline_tokens(pa)

        def lp(pv, pa):
            return float(m.transformer(pv.flatten(0, 1)[None], pa.flatten(0, 1)[None]).log_softmax(-1)[0, 7])

        h = 1e-5
        for (s, k, modality) in ((4, 2, 0), (9, 5, 1)):
            x, b = (pv, bv) if modality == 0 else (pa, ba)
            d = x[s, k] - b[s, k]  # the directional derivative along (token - baseline) is the score
            plus, minus = x.clone(), x.clone()
            plus[s, k] += h * d
            minus[s, k] -= h * d
            fd = (lp(plus, pa) - lp(minus, pa)) / (2 * h) if modality == 0 else (lp(pv, plus) - lp(pv, minus)) / (2 * h)
            score = (att.visual_token if modality == 0 else att.audio_token)[s, k]
            assert float(score) == pytest.approx(fd, rel=1e-5, abs=1e-9) and abs(fd) > 1e-6


def test_window_matches_predict_and_figure(model, clip, tmp_path):
    ex = explain_window(model, clip, start_sec=0.2, tokens=False)
    pred = predict_window(model, clip, start_sec=0.2)
    assert ex.start_sec == pytest.approx(pred.start_sec) and ex.end_sec == pytest.approx(pred.end_sec)
    torch.testing.assert_close(ex.logits, pred.logits, atol=1e-5, rtol=0)
    assert ex.thumbnails.shape[0] == 15 and ex.thumbnails.dtype == np.uint8 and len(ex.waveform) == 76800
    d = json.loads(json.dumps(ex.to_dict()))
    assert d["method"] == "occlusion" and len(d["segments"]) == 14 and "tokens" not in d
    assert d["probabilities"] == pytest.approx(pred.probs.tolist(), abs=1e-5) and len(d["classes_sec"]) == 21
    assert d["target"]["offset_sec"] == d["offset_sec"] and d["target"]["given"] is False

    out = tmp_path / "fig.png"
    save_figure(ex, out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1500, 920)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]  # no temporary file left behind

    before = clip.read_bytes()
    with pytest.raises(SynchformerError, match="is an input file") as err:
        save_figure(ex, clip)
    assert "\n" not in str(err.value) and clip.read_bytes() == before
    with pytest.raises(SynchformerError, match=r"\.png, \.pdf or \.svg"):
        save_figure(ex, tmp_path / "fig.mov")


def test_target_off_the_grid_is_refused(model, clip):
    with pytest.raises(SynchformerError, match="not an offset class"):
        explain_window(model, clip, target_sec=0.3)


def test_cli(clip, weights, tmp_path, capsys):
    out = tmp_path / "fig.png"
    assert main(["explain", str(clip), "-o", str(out), "--weights", str(weights), "--target", "-0.4",
                 "--method", "gradient", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["method"] == "gradient" and d["target"] == {**d["target"], "offset_sec": -0.4, "given": True}
    assert len(d["tokens"]["visual"]) == 14 and len(d["tokens"]["audio"][0]) == 6 and d["figure"] == str(out)
    assert out.read_bytes()[:4] == b"\x89PNG"

    assert main(["explain", str(clip), "--weights", str(weights), "--segments-only", "--target", "0"]) == 0
    text = capsys.readouterr().out
    assert "picture:" in text and "sound:" in text and "by occlusion" in text
    assert "explaining +0.00 s (as asked)" in text  # the grid's middle class is -3e-8 in float32: shown as 0


@pytest.mark.parametrize("case", ["missing", "not_video", "over_input", "short", "off_grid"])
def test_cli_bad_input_exits_2(case, clip, weights, tmp_path, capsys):
    video, out, extra = str(clip), str(tmp_path / "fig.png"), []
    if case == "missing":
        video = str(tmp_path / "nope.mp4")
    elif case == "not_video":
        video = str(tmp_path / "text.mp4")
        (tmp_path / "text.mp4").write_text("not a video")
    elif case == "over_input":
        out = video
    elif case == "short":
        extra = ["--start", "1.0"]  # 5.2 s clip: a window from 1.0 s needs 4.88 s
    elif case == "off_grid":
        extra = ["--target", "0.3"]
    before = clip.read_bytes()
    assert main(["explain", video, "-o", out, "--weights", str(weights), "--segments-only", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("synchformer: error:") and err.count("\n") == 1
    assert clip.read_bytes() == before and not (tmp_path / "fig.png").exists()


@pytest.mark.skipif(not PEN.exists(), reason=f"{PEN} not found")
def test_real_clip(model, tmp_path):
    ex = explain_window(model, PEN, start_sec=1.0, tokens=False, method="gradient")
    assert ex.visual_segment.shape == (14,) and torch.isfinite(ex.audio_segment).all()
    save_figure(ex, tmp_path / "pen.svg")
    assert (tmp_path / "pen.svg").read_text().lstrip().startswith("<?xml")


def test_cli_without_matplotlib_is_one_line_before_any_work(clip, weights, tmp_path, capsys, monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "fig.png"
    assert main(["explain", str(clip), "-o", str(out), "--weights", str(weights), "--segments-only"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("synchformer: error:") and err.count("\n") == 1 and "pip install matplotlib" in err
    assert not out.exists()


def test_the_bundled_models_warning_reaches_the_figures(clip, tmp_path, capsys, monkeypatch):
    """Named explicitly or standing in, the bundled model's warning is in explain's text, JSON and figure, and
    under predict's heat map (a figure must not look more trustworthy than the text)."""
    import synchformer.plots as plots
    from synchformer.model.bundled import SYNTHETIC_TINY

    drawn = []
    real = plots.warning_line
    monkeypatch.setattr(plots, "warning_line", lambda fig, w, **kw: (drawn.append(w), real(fig, w, **kw)))
    out = tmp_path / "fig.png"
    assert main(["explain", str(clip), "-o", str(out), "--weights", str(SYNTHETIC_TINY), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["warnings"]) == 1 and "bundled model" in d["warnings"][0]
    assert drawn == d["warnings"] and out.read_bytes()[:4] == b"\x89PNG"
    assert main(["predict", str(clip), "--weights", str(SYNTHETIC_TINY), "--plot", str(tmp_path / "h.png")]) == 0
    assert "warning: using the bundled model" in capsys.readouterr().out
    assert len(drawn) == 2 and drawn[1] == drawn[0] and (tmp_path / "h.png").exists()
