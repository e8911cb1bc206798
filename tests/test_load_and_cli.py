"""load_model on every container, `synchformer convert`, and `synchformer predict` end to end (tiny model)."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import synchformer
from synchformer.cli import main
from synchformer.model import ModelConfig, Synchformer, save_model
from synchformer.model.checkpoint import read_checkpoint
from synchformer.model.load import _infer
from _shared import MEDIA, PARITY, needs_shared

TINY = ModelConfig.tiny()


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return Synchformer(TINY).eval()


@pytest.fixture(scope="module")
def tiny_inputs():
    g = torch.Generator().manual_seed(1)
    return (torch.rand(1, 14, 16, 3, 224, 224, generator=g) * 2 - 1, torch.randn(1, 14, 1, 128, 66, generator=g))


def same_outputs(a, b, inputs):
    with torch.inference_mode():
        torch.testing.assert_close(a(*inputs), b(*inputs), atol=1e-6, rtol=1e-6)


def test_safetensors_round_trip(tmp_path, tiny_model, tiny_inputs):
    path = tmp_path / "tiny.safetensors"
    digest = save_model(tiny_model, path)
    assert len(digest) == 64 and [p.name for p in tmp_path.iterdir()] == ["tiny.safetensors"]
    loaded = synchformer.load_model(path)
    assert loaded.cfg == TINY and not loaded.training
    same_outputs(tiny_model, loaded, tiny_inputs)


def test_official_container_layout(tmp_path, tiny_model, tiny_inputs):
    """The released files' layout: {'model': state dict, 'args': config, 'optimizer': ...}."""
    path = tmp_path / "24-01-04T16-39-21.pt"
    args = {"model": {"params": {"transformer": {"params": {"n_head": 2}}}}}
    torch.save({"args": args, "epoch": 3, "model": tiny_model.state_dict(), "optimizer": {"state": {}},
                "model_type": "Synchformer"}, path)
    loaded = synchformer.load_model(path, config=TINY)
    same_outputs(tiny_model, loaded, tiny_inputs)
    # without a config: sizes from the shapes, the transformer's head count from `args`; the tiny encoders'
    # head counts (not the released width) come from a sidecar, and without one the load is refused
    with pytest.raises(synchformer.SynchformerError, match="v_heads, a_heads"):
        synchformer.load_model(path)
    path.with_suffix(".json").write_text(json.dumps({"model": {"v_heads": 2, "a_heads": 2}}))
    inferred = synchformer.load_model(path)
    assert inferred.cfg == dataclasses.replace(TINY, timing="authors")  # the authors' file: their audio timing
    same_outputs(tiny_model, inferred, tiny_inputs)


def test_bare_state_dict_settings_come_from_a_sidecar_never_a_guess(tmp_path, tiny_inputs):
    """A bare state dict cannot say its head counts or whether it centres segments: the load says so in one
    line, and a sidecar <file>.json gives them. A guess would predict differently (here: centred weights)."""
    torch.manual_seed(0)
    centred = synchformer.Synchformer(dataclasses.replace(TINY, center_segments=True)).eval()
    path = tmp_path / "mine.pth"
    torch.save(centred.state_dict(), path)
    with pytest.raises(synchformer.SynchformerError) as err:
        synchformer.load_model(path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    assert "v_heads, a_heads, heads" in msg and "center_segments" in msg and str(tmp_path / "mine.json") in msg
    with pytest.raises(synchformer.SynchformerError, match="pass config="):
        synchformer.load_model(centred.state_dict())

    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps({"model": {"v_heads": 2, "a_heads": 2, "heads": 2}}))
    with pytest.raises(synchformer.SynchformerError, match="center_segments") as err:
        synchformer.load_model(path)
    assert "v_heads" not in str(err.value)
    sidecar.write_text(json.dumps({"model": {"v_heads": 2, "a_heads": 2, "heads": 2, "center_segments": True}}))
    loaded = synchformer.load_model(path)
    assert loaded.cfg.center_segments
    same_outputs(centred, loaded, tiny_inputs)
    # the guess the old code made (no centring) gives other logits: the refusal above is what saves the user
    guessed = synchformer.load_model(path, config=dataclasses.replace(TINY, center_segments=False))
    with torch.inference_mode():
        assert not torch.allclose(guessed(*tiny_inputs), centred(*tiny_inputs), atol=1e-4)

    sidecar.write_text(json.dumps({"model": {"v_heads": 2, "a_heads": 2, "heads": 2, "centre": True}}))
    with pytest.raises(synchformer.SynchformerError, match="unknown model setting"):
        synchformer.load_model(path)
    sidecar.write_text(json.dumps({"v_heads": 2}))
    with pytest.raises(synchformer.SynchformerError, match='no "model" object'):
        synchformer.load_model(path)


def test_released_widths_need_only_center_segments_and_encoders_need_nothing():
    with torch.device("meta"):
        sd = Synchformer(ModelConfig()).state_dict()
    assert _infer(sd)[1] == ["center_segments"]  # a bare state dict of the released shapes
    assert _infer(sd, reference=True) == (ModelConfig(timing="authors"), [])  # the reference's own file: no centring, its timing
    encoders = {k: v for k, v in sd.items() if k.startswith(("vfeat_", "afeat_"))}
    assert _infer(encoders)[1] == []  # e.g. MMAudio's synchformer_state_dict.pth: encoders only


def test_module_prefixed_bare_state_dict_in_memory(tiny_model, tiny_inputs):
    sd = {f"module.{k}": v for k, v in tiny_model.state_dict().items()}
    same_outputs(tiny_model, synchformer.load_model(sd, config=TINY), tiny_inputs)


def test_stage1_file_gives_encoders_only(tmp_path, tiny_model, tiny_inputs):
    sd = tiny_model.state_dict()
    enc = {k.replace("vfeat_extractor.", "module.v_encoder.").replace("afeat_extractor.", "module.a_encoder."): v
           for k, v in sd.items() if k.startswith(("vfeat_extractor.", "afeat_extractor."))}
    path = tmp_path / "epoch_best.pt"
    torch.save({"epoch": 1, "state_dict": {**enc, "module.logit_scale": torch.tensor(0.07)}}, path)
    model = synchformer.load_model(path, config=TINY)
    assert model.has_sync_head is False
    with torch.inference_mode():
        torch.testing.assert_close(model.extract_vfeats(tiny_inputs[0]), tiny_model.extract_vfeats(tiny_inputs[0]))
        torch.testing.assert_close(model.extract_afeats(tiny_inputs[1]), tiny_model.extract_afeats(tiny_inputs[1]))
        with pytest.raises(RuntimeError, match="only the encoders"):
            model(*tiny_inputs)


def test_half_precision_weights_are_read_as_float32(tmp_path, tiny_model):
    path = tmp_path / "half.pth"
    torch.save({k: v.half() for k, v in tiny_model.state_dict().items()}, path)
    model = synchformer.load_model(path, config=TINY)
    assert model.vproj.weight.dtype == torch.float32


@needs_shared
@pytest.mark.parametrize("name,fmt", [("official_format_stage2.pt", "official"), ("official_format_stage1.pt", "stage1"),
                                      ("plain_state_dict.pth", "state_dict")])
def test_shared_containers_load_and_partial_weights_are_named(name, fmt):
    ckpt = read_checkpoint(PARITY / name)
    assert ckpt.source_format == fmt and ckpt.state_dict
    # these fixtures carry a few tensors only: load_model says so in one line
    with pytest.raises(synchformer.SynchformerError) as err:
        synchformer.load_model(PARITY / name)
    assert str(err.value).startswith(str(PARITY / name)) and "\n" not in str(err.value)
    assert "missing" in str(err.value)


def test_convert_cli(tmp_path, tiny_model, tiny_inputs, capsys):
    src = tmp_path / "official.pt"
    torch.save({"args": {"model": {"params": {"transformer": {"params": {"n_head": 2}}}}},
                "model": tiny_model.state_dict(), "model_type": "Synchformer"}, src)
    before = src.read_bytes()
    # tiny encoders have 2 heads where full-size ones have 12: the shapes cannot tell, and `args` gives only the
    # transformer's, so convert refuses in one line until a sidecar official.json gives the encoders' counts
    assert main(["convert", str(src), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "v_heads, a_heads" in err and "official.json" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.safetensors").exists()
    (tmp_path / "official.json").write_text(json.dumps({"model": {"v_heads": 2, "a_heads": 2}}))
    assert main(["convert", str(src), str(tmp_path / "out.safetensors")]) == 0
    assert "sha256" in capsys.readouterr().out
    same_outputs(tiny_model, synchformer.load_model(tmp_path / "out.safetensors"), tiny_inputs)
    assert src.read_bytes() == before
    converted = read_checkpoint(tmp_path / "out.safetensors")
    assert converted.source_format == "safetensors" and converted.config["converted_from"] == "official.pt"
    for k, v in tiny_model.state_dict().items():
        torch.testing.assert_close(converted.state_dict[k], v)

    # the same input gives the same bytes, run after run; an existing output is kept unless --overwrite
    digest = (tmp_path / "out.safetensors").read_bytes()
    assert main(["convert", str(src), str(tmp_path / "out.safetensors")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "out.safetensors"), "--overwrite"]) == 0
    assert (tmp_path / "out.safetensors").read_bytes() == digest
    assert main(["convert", str(src), str(tmp_path / "again.safetensors")]) == 0
    assert (tmp_path / "again.safetensors").read_bytes() == digest

    assert main(["convert", str(src), str(src)]) == 2  # not a .safetensors name
    same = tmp_path / "same.safetensors"
    save_model(tiny_model, same)
    assert main(["convert", str(same), str(same), "--overwrite"]) == 2  # never writes over its input
    assert "refuses to overwrite" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_model(tiny_model, path)
    return path


@needs_shared
def test_predict_json(tiny_weights, capsys):
    video = MEDIA / "pen_hits_coin__node-opencv_motion.mov"
    assert main(["predict", str(video), "--weights", str(tiny_weights), "--start", "1.0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["file"] == str(video) and out["head"] == "offset"
    assert out["window"] == {"start_sec": 1.08, "end_sec": 5.88}
    assert len(out["top5"]) == 5 and out["top5"][0]["offset_sec"] == out["offset_sec"]
    probs = [t["probability"] for t in out["top5"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert out["offset_sec"] in {round(x, 3) for x in np.linspace(-2, 2, 21)}


@needs_shared
def test_predict_table_and_module_entry_point(tiny_weights):
    video = MEDIA / "lego_robot__techslides_small.webm"
    run = subprocess.run([sys.executable, "-m", "synchformer", "predict", str(video), "-w", str(tiny_weights),
                          "--hop", "2.4"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "2 windows of 4.8 s (hop 2.56 s)" in run.stdout and "0.64-5.44" in run.stdout  # tail window flush
    run = subprocess.run([sys.executable, "-m", "synchformer", "predict", str(video), "-w", str(tiny_weights),
                          "--start", "0"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "window 0.08-4.88 s" in run.stdout and "top-5:" in run.stdout


@pytest.mark.parametrize("make,expect", [
    (lambda d: d / "missing.mp4", "not found"),
    (lambda d: (d / "notes.mp4").write_text("not a video") and d / "notes.mp4", ""),
    (lambda d: (d / "empty.mov").write_bytes(b"") or d / "empty.mov", ""),
])
def test_predict_bad_input_is_one_line_exit_2(tmp_path, tiny_weights, capsys, make, expect):
    path = make(tmp_path)
    assert main(["predict", str(path), "--weights", str(tiny_weights)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and expect in err and "Traceback" not in err


@needs_shared
def test_predict_too_short_and_no_weights(tiny_weights, capsys):
    short = MEDIA / "talking_head__kphotoalbum_movie.avi"  # 4.5 s: less than one window
    assert main(["predict", str(short), "--weights", str(tiny_weights)]) == 2
    assert "too short" in capsys.readouterr().err
    assert main(["predict", str(short)]) == 2
    assert "--weights" in capsys.readouterr().err
    assert main(["predict", str(short), "--weights", str(short)]) == 2  # a video is not a checkpoint
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: --device cuda is valid here")
@pytest.mark.parametrize("dev, problem", [("cuda", "CUDA is not available"), ("cuda:1", "CUDA is not available"),
                                          ("gpu0", "not a device name")])
def test_unusable_device_is_one_line(tmp_path, capsys, dev, problem):
    assert main(["predict", str(tmp_path / "any.mp4"), "--device", dev]) == 2
    err = capsys.readouterr().err.strip()
    assert problem in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_stage1_weights_refused_by_predict_in_one_line_and_kept_encoders_only(tmp_path, tiny_model, capsys):
    sd = tiny_model.state_dict()
    enc = {k.replace("vfeat_extractor.", "module.v_encoder.").replace("afeat_extractor.", "module.a_encoder."): v
           for k, v in sd.items() if k.startswith(("vfeat_extractor.", "afeat_extractor."))}
    stage1 = synchformer.load_model(enc, config=TINY)
    path = tmp_path / "stage1.safetensors"
    save_model(stage1, path)  # the untrained head is not written: the file stays a stage I file
    assert not any(k.startswith("transformer.") for k in read_checkpoint(path).state_dict)
    assert synchformer.load_model(path).has_sync_head is False
    from synchformer.training.synth import make_sparse_clip

    make_sparse_clip(tmp_path / "any.mp4", 880_041, duration=6.0)
    assert main(["predict", str(tmp_path / "any.mp4"), "-w", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds only the encoders" in err and str(path) in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("command", [["predict"], ["fix", "-o", "OUT"], ["explain"], ["features", "-o", "F.npy"]])
def test_inputs_are_checked_before_the_model_is_loaded(tmp_path, capsys, command):
    """A missing video is named at once: the weights (here a file that is no checkpoint, which would be the
    error if they were loaded first) are not touched."""
    weights = tmp_path / "big.pt"
    weights.write_bytes(b"not a checkpoint" * 1000)
    args = [a.replace("OUT", str(tmp_path / "o.mp4")).replace("F.npy", str(tmp_path / "f.npy")) for a in command]
    assert main([args[0], str(tmp_path / "missing.mp4"), *args[1:], "-w", str(weights)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"synchformer: error: {tmp_path / 'missing.mp4'}: file not found"
