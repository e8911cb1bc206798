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
SETTINGS_KEY = "synchformer_settings"  # the package's settings in a state dict (README "Supported checkpoints")


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


def test_bare_state_dict_of_other_widths_takes_its_settings_from_a_sidecar_never_a_guess(tmp_path, tiny_inputs):
    """A bare state dict of other widths than the released ones, without the package's settings, cannot say its
    head counts or whether it centres segments: the load says so in one line, and a sidecar <file>.json gives
    them. A guess would predict differently (here: the uncentred weights read as centred)."""
    torch.manual_seed(0)
    plain = synchformer.Synchformer(TINY).eval()
    path = tmp_path / "mine.pth"
    torch.save(plain.state_dict(), path)
    with pytest.raises(synchformer.SynchformerError) as err:
        synchformer.load_model(path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    assert "v_heads, a_heads, heads" in msg and "center_segments" in msg and str(tmp_path / "mine.json") in msg
    with pytest.raises(synchformer.SynchformerError, match="pass config="):
        synchformer.load_model(plain.state_dict())

    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps({"model": {"v_heads": 2, "a_heads": 2, "heads": 2}}))
    with pytest.raises(synchformer.SynchformerError, match="center_segments") as err:
        synchformer.load_model(path)
    assert "v_heads" not in str(err.value)
    sidecar.write_text(json.dumps({"model": {"v_heads": 2, "a_heads": 2, "heads": 2, "center_segments": False}}))
    loaded = synchformer.load_model(path)
    assert not loaded.cfg.center_segments
    same_outputs(plain, loaded, tiny_inputs)
    guessed = synchformer.load_model(path, config=dataclasses.replace(TINY, center_segments=True))
    with torch.inference_mode():
        assert not torch.allclose(guessed(*tiny_inputs), plain(*tiny_inputs), atol=1e-4)

    sidecar.write_text(json.dumps({"model": {"v_heads": 2, "a_heads": 2, "heads": 2, "centre": True}}))
    with pytest.raises(synchformer.SynchformerError, match="unknown model setting"):
        synchformer.load_model(path)
    sidecar.write_text(json.dumps({"v_heads": 2}))
    with pytest.raises(synchformer.SynchformerError, match='no "model" object'):
        synchformer.load_model(path)


def test_a_centred_models_bare_state_dict_says_so_itself(tmp_path, tiny_inputs):
    """The package's centred models write their settings into the state dict: `torch.save(model.state_dict())`
    loads centred (a sidecar gives only what the widths cannot tell), a half-precision copy too, and a config or
    sidecar that says otherwise is refused in one line rather than run uncentred."""
    torch.manual_seed(0)
    centred = synchformer.Synchformer(dataclasses.replace(TINY, center_segments=True)).eval()
    path = tmp_path / "mine.pth"
    torch.save(centred.state_dict(), path)
    with pytest.raises(synchformer.SynchformerError) as err:
        synchformer.load_model(path)
    assert "v_heads, a_heads, heads" in str(err.value) and "center_segments" not in str(err.value)
    path.with_suffix(".json").write_text(json.dumps({"model": {"v_heads": 2, "a_heads": 2, "heads": 2}}))
    loaded = synchformer.load_model(path)
    assert loaded.cfg == dataclasses.replace(TINY, center_segments=True)
    same_outputs(centred, loaded, tiny_inputs)

    half = tmp_path / "half.pth"
    torch.save({k: v.half() for k, v in centred.state_dict().items()}, half)  # the marker is cast too
    half.with_suffix(".json").write_text(json.dumps({"model": {"v_heads": 2, "a_heads": 2, "heads": 2}}))
    assert synchformer.load_model(half).cfg.center_segments

    in_memory = synchformer.load_model(centred.state_dict(), config=dataclasses.replace(TINY, center_segments=True))
    same_outputs(centred, in_memory, tiny_inputs)
    with pytest.raises(synchformer.SynchformerError) as err:
        synchformer.load_model(centred.state_dict(), config=TINY)  # a config that does not centre
    assert str(err.value).startswith("<state dict>: ") and "center_segments=true" in str(err.value)
    path.with_suffix(".json").write_text(json.dumps({"model": {"v_heads": 2, "a_heads": 2, "heads": 2,
                                                               "center_segments": False}}))
    with pytest.raises(synchformer.SynchformerError, match="center_segments=true") as err:
        synchformer.load_model(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)

    # the module itself: a strict load into a model that does not centre fails; the marker is no weight
    with pytest.raises(RuntimeError, match="center_segments"):
        synchformer.Synchformer(TINY).load_state_dict(centred.state_dict())
    other = synchformer.Synchformer(dataclasses.replace(TINY, center_segments=True))
    assert not other.load_state_dict(centred.state_dict()).unexpected_keys
    same_outputs(centred, other.eval(), tiny_inputs)


def test_every_format_the_package_writes_carries_the_centring(tmp_path, tiny_inputs, capsys):
    """save_model (what training and convert write) keeps the settings marker beside its config, so a state dict
    taken out of any of them (safetensors' load_file, torch.save) still says it centres; the bundled files, written
    before the marker, are unchanged and load as they did (centred, from their metadata)."""
    from safetensors.torch import load_file

    from synchformer.model.assets import BUNDLED, file_of
    from synchformer.model.checkpoint import sha256sum

    torch.manual_seed(0)
    centred = synchformer.Synchformer(dataclasses.replace(TINY, center_segments=True)).eval()
    save_model(centred, tmp_path / "ours.safetensors")
    assert SETTINGS_KEY in load_file(tmp_path / "ours.safetensors")
    assert synchformer.load_model(tmp_path / "ours.safetensors").cfg.center_segments
    bare = tmp_path / "copy.pth"  # the tensors of the package's file, re-hosted bare
    torch.save(load_file(tmp_path / "ours.safetensors"), bare)
    bare.with_suffix(".json").write_text(json.dumps({"model": {"v_heads": 2, "a_heads": 2, "heads": 2}}))
    same_outputs(centred, synchformer.load_model(bare), tiny_inputs)
    assert main(["convert", str(bare), str(tmp_path / "conv.safetensors")]) == 0
    capsys.readouterr()
    assert SETTINGS_KEY in load_file(tmp_path / "conv.safetensors")
    assert synchformer.load_model(tmp_path / "conv.safetensors").cfg.center_segments

    for name in BUNDLED:
        file, sha = file_of(name)
        assert sha256sum(file) == sha and SETTINGS_KEY not in load_file(file)  # the shipped bytes, as they were
        model = synchformer.load_model(file)
        assert model.cfg.center_segments and model.bundled == name
        assert SETTINGS_KEY in model.state_dict()  # and what is saved of it from here on says so


def test_a_bare_state_dict_of_the_released_widths_is_the_reference_unless_it_says_otherwise():
    from synchformer.model.checkpoint import Checkpoint, normalise_state_dict
    from synchformer.model.load import _config_and_gaps

    def bare(raw):  # an in-memory state dict without the package's settings, as load_model reads it
        return Checkpoint(state_dict=normalise_state_dict(raw), source_format="state_dict", head="offset")

    with torch.device("meta"):
        sd = Synchformer(ModelConfig()).state_dict()
        centred = Synchformer(ModelConfig(center_segments=True)).state_dict()
        fine = Synchformer(ModelConfig(max_offset_sec=0.2)).state_dict()
    assert SETTINGS_KEY not in sd  # the released layout, key for key (tests/test_model.py)
    reference = ModelConfig(timing="authors")  # no centring, and the authors' audio timing
    assert _config_and_gaps(bare(sd)) == (reference, [])
    assert _config_and_gaps(bare({f"module.{k}": v for k, v in sd.items()})) == (reference, [])
    assert _config_and_gaps(bare({"model": sd, "epoch": 3})) == (reference, [])
    encoders = {k: v for k, v in sd.items() if k.startswith(("vfeat_", "afeat_"))}
    assert _config_and_gaps(bare(encoders))[1] == []  # e.g. MMAudio's synchformer_state_dict.pth
    assert _infer(sd, reference=True) == (reference, [])  # the reference's own file format
    assert synchformer.model.infer_config(sd) == ModelConfig()  # the shapes alone: the defaults, as documented

    from synchformer.model.checkpoint import checkpoint_of  # with the package's settings: what they say

    assert SETTINGS_KEY in centred and SETTINGS_KEY in fine
    assert _config_and_gaps(checkpoint_of(centred)) == (ModelConfig(center_segments=True), [])
    assert _config_and_gaps(checkpoint_of(fine)) == (ModelConfig(max_offset_sec=0.2), [])


def _seeded(key_file, only=None, seed: int = 1) -> dict:
    """The parity fixtures' weights (../shared/parity/README.md's rule); ``only``: just these keys."""
    from _shared import read_keys

    sd = {}
    for i, (name, shape) in enumerate(read_keys(key_file)):
        if only is not None and name not in only:
            continue
        g = torch.Generator().manual_seed(seed * 100000 + i)
        t = torch.randn(shape, generator=g, dtype=torch.float32) * 0.02
        sd[name] = t + 1.0 if len(shape) == 1 and name.endswith(".weight") else t
    return sd


@pytest.mark.slow
@needs_shared
def test_a_bare_state_dict_of_the_released_layout_reproduces_the_reference(tmp_path):
    """What MMAudio and evaluation harnesses hold (`torch.save(ckpt["model"], ...)`, or the dict in memory) loads
    without any config, as the reference (no centring, the authors' timing), and gives its numbers; with the
    package's settings in it, the same tensors load centred instead."""
    expected = np.load(PARITY / "sync_expected.npz")
    vfeats, afeats = torch.from_numpy(expected["vfeats"]), torch.from_numpy(expected["afeats"])
    sd = _seeded(PARITY / "keys_sync.txt")
    path = tmp_path / "synchformer_state_dict.pth"
    torch.save(sd, path)
    for source in (sd, path):
        model = synchformer.load_model(source)
        assert model.cfg == ModelConfig(timing="authors") and model.source_format == "state_dict"
        with torch.inference_mode():
            logits = model.compare_v_a(vfeats, afeats)
            v1 = model.extract_vfeats(torch.from_numpy(expected["video_input"][:, :1]))  # one segment: the encoders
            a1 = model.extract_afeats(torch.from_numpy(expected["audio_input"][:, :1]))
        np.testing.assert_allclose(logits.numpy(), expected["logits"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(v1.numpy(), expected["vfeats"][:, :1], rtol=0, atol=1e-4)
        np.testing.assert_allclose(a1.numpy(), expected["afeats"][:, :1], rtol=0, atol=1e-4)
        del model

    # stage III (synchronizability): the same encoders, its own positions and head
    stage3 = {**{k: v for k, v in sd.items() if not k.startswith("transformer.off_head.")},
              **_seeded(PARITY / "keys_synchronizability.txt", only={"transformer.pos_emb_cfg.pos_emb",
                                                                     "transformer.sync_head.weight",
                                                                     "transformer.sync_head.bias"})}
    model = synchformer.load_model(stage3)
    assert model.cfg == ModelConfig.synchronizability(timing="authors")
    with torch.inference_mode():
        logits = model.compare_v_a(vfeats[:, :13], afeats[:, :13])
    want = np.load(PARITY / "synchronizability_expected.npz")["logits"]
    np.testing.assert_allclose(logits.numpy(), want, rtol=0, atol=1e-4)

    with torch.device("meta"):  # the marker a centred full-size model of the package writes
        marker = Synchformer(ModelConfig(center_segments=True)).state_dict()[SETTINGS_KEY]
    marked = {**sd, SETTINGS_KEY: marker}
    model = synchformer.load_model(marked)
    assert model.cfg == ModelConfig(center_segments=True)
    with torch.inference_mode():
        assert not np.allclose(model.compare_v_a(vfeats, afeats).numpy(), expected["logits"], atol=1e-2)


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
    # one window, reported as every window of a whole-file run is: with its verdict
    assert out["file"] == str(video) and out["schema"] == "synchformer.timeline/1" and out["n_windows"] == 1
    [w] = out["windows"]
    assert (w["start_sec"], w["end_sec"]) == (1.0, 5.8)
    assert isinstance(out["reliable"], bool) and isinstance(out["reasons"], list)
    probs = out["distribution"]
    assert len(probs) == 21 and abs(sum(probs) - 1) < 1e-3
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
    assert "one window, 0.00-4.80 s" in run.stdout and "0.00-4.80" in run.stdout.splitlines()[-1]


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
