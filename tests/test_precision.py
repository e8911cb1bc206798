"""--precision: bf16 autocast where the hardware is fast at it, with numbers held close to fp32's."""

import json

import numpy as np
import pytest
import torch

from synchformer.cli import main
from synchformer.errors import SynchformerError
from synchformer.inference.analyze import analyze
from synchformer.model import ModelConfig, Synchformer, load_model
from synchformer.model import precision as prec
from synchformer.model.bundled import SYNTHETIC_TINY, synthetic_tiny
from synchformer.training import synth
from _shared import MEDIA, needs_shared

PEN = MEDIA / "pen_hits_coin__node-opencv_motion.mov"


def test_auto_is_bf16_only_where_the_cpu_has_bf16_units(monkeypatch):
    monkeypatch.setattr(prec, "cpu_has_fast_bf16", lambda: False)
    assert prec.resolve("auto", "cpu") == "fp32"
    monkeypatch.setattr(prec, "cpu_has_fast_bf16", lambda: True)
    assert prec.resolve("auto", "cpu") == "bf16"
    assert prec.resolve("fp32", "cpu") == "fp32" and prec.resolve("bf16", "cpu") == "bf16"
    # with the units, a full-size model gains (3x measured) and a tiny one loses (0.65x): auto follows the size
    assert prec.resolve("auto", "cpu", ModelConfig()) == "bf16"
    assert prec.resolve("auto", "cpu", ModelConfig(v_width=128, v_heads=2)) == "bf16"
    assert prec.resolve("auto", "cpu", ModelConfig.tiny()) == "fp32"
    assert prec.resolve("bf16", "cpu", ModelConfig.tiny()) == "bf16"  # asked for: given
    assert load_model(SYNTHETIC_TINY, precision="auto").precision == "fp32"
    monkeypatch.setattr(prec, "cpu_has_fast_bf16", lambda: False)
    assert prec.resolve("auto", "cpu", ModelConfig()) == "fp32"
    with pytest.raises(SynchformerError, match="fp16 needs a CUDA GPU"):
        prec.resolve("fp16", "cpu")
    with pytest.raises(SynchformerError, match="precision must be one of"):
        prec.resolve("int8", "cpu")


def test_bf16_outputs_are_float32_and_close_to_fp32():
    torch.manual_seed(0)
    model = Synchformer(ModelConfig.tiny()).eval()
    g = torch.Generator().manual_seed(3)
    px = model.cfg.image_size
    video = torch.rand(2, 14, 16, 3, px, px, generator=g) * 2 - 1
    audio = torch.randn(2, 14, 1, 128, 66, generator=g)
    with torch.inference_mode():
        ref = model(video, audio).softmax(-1)
        with prec.using("bf16", model):
            v, a = model.extract_vfeats(video), model.extract_afeats(audio)
            got = model.compare_v_a(v, a).softmax(-1)
        assert model.precision == "fp32"  # put back
    assert v.dtype == a.dtype == got.dtype == torch.float32
    assert float((got - ref).abs().max()) < 0.02
    assert not torch.equal(got, ref)  # it did run in bf16


def test_load_model_takes_a_precision():
    assert load_model(SYNTHETIC_TINY).precision == "fp32"  # the reference's numbers unless asked
    assert load_model(SYNTHETIC_TINY, precision="bf16").precision == "bf16"
    with pytest.raises(SynchformerError, match="fp16 needs a CUDA GPU"):
        load_model(SYNTHETIC_TINY, precision="fp16")


def test_the_bundled_models_synthetic_scores_hold_in_bf16(tmp_path):
    """Held-out synthetic clips (seeds no training set used) at known offsets: bf16 finds the same classes
    as fp32 and every pooled probability is within 0.02."""
    model = synthetic_tiny()
    rng = np.random.default_rng(5)
    right = {"fp32": 0, "bf16": 0}
    for i in range(6):
        truth = float(np.round(rng.choice(model.cfg.offset_grid().numpy()), 2))
        clip = tmp_path / f"c{i}.mp4"
        synth.make_sparse_clip(clip, 960_000 + i, duration=10.0, offset_sec=truth)
        pooled = {}
        for p in ("fp32", "bf16"):
            s = analyze(model, clip, hop_sec=0.64, precision=p).summarize()
            pooled[p] = s.distribution
            right[p] += abs(s.offset_sec - truth) < 0.1
        assert float(np.abs(pooled["fp32"] - pooled["bf16"]).max()) < 0.02
    assert right["bf16"] >= right["fp32"] >= 4


@needs_shared
def test_cli_precision(capsys):
    args = ["predict", str(PEN), "--json", "--weights", str(SYNTHETIC_TINY), "--device", "cpu"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "fp32"  # auto: the bundled model is too small to gain
    assert main(args + ["--precision", "bf16"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "bf16"
    assert main(args + ["--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fp16 needs a CUDA GPU" in err[0]
