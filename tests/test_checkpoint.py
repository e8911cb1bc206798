"""Checkpoint reading: fixture containers, refusal of hostile pickles, damaged files, safetensors round trip."""

from __future__ import annotations

import builtins
import collections
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from synchformer.errors import SynchformerError
from synchformer.model.checkpoint import normalise_state_dict, read_checkpoint, save_safetensors, sha256sum

SHARED = Path("/work/shared")
PARITY = SHARED / "parity"
needs_shared = pytest.mark.skipif(not PARITY.is_dir(), reason="parity fixtures (/work/shared/parity) are absent")


def _keys(path: Path) -> set[str]:
    return {line.split()[0] for line in path.read_text().splitlines() if line.strip()}


# --- fixtures -----------------------------------------------------------------------------------


@needs_shared
def test_official_stage2_container():
    ckpt = read_checkpoint(PARITY / "official_format_stage2.pt")
    assert ckpt.source_format == "official"
    assert ckpt.head == "offset"
    assert ckpt.state_dict and set(ckpt.state_dict) <= _keys(PARITY / "keys_sync.txt")
    assert set(ckpt.state_dict) <= _keys(SHARED / "reference" / "official_state_dict_keys.txt")
    assert all(isinstance(t, torch.Tensor) for t in ckpt.state_dict.values())
    # `args` (an OmegaConf DictConfig in the pickle) became plain data, without omegaconf
    cfg = ckpt.config
    assert type(cfg) is dict and {"model", "data", "training"} <= set(cfg)
    assert cfg["action"] == "train_avsync_model"
    transformer = cfg["model"]["params"]["transformer"]["params"]
    assert transformer["n_layer"] == 3 and transformer["n_embd"] == 768
    assert transformer["pos_emb_cfg"]["params"]["block_shape"] == [198]  # a ListConfig -> list
    assert transformer["off_head_cfg"]["params"]["out_features"] == 21


@needs_shared
def test_official_stage1_container_gives_encoders_only():
    ckpt = read_checkpoint(PARITY / "official_format_stage1.pt")
    assert ckpt.source_format == "stage1"
    assert ckpt.head is None
    assert ckpt.state_dict
    assert all(k.startswith(("vfeat_extractor.", "afeat_extractor.")) for k in ckpt.state_dict)
    assert set(ckpt.state_dict) <= _keys(PARITY / "keys_sync.txt")
    assert ckpt.logit_scale is not None and ckpt.logit_scale.shape == ()
    assert isinstance(ckpt.config, dict) and "model" in ckpt.config


@needs_shared
def test_plain_state_dict():
    ckpt = read_checkpoint(PARITY / "plain_state_dict.pth")
    assert ckpt.source_format == "state_dict"
    assert ckpt.head == "offset"
    assert ckpt.state_dict and set(ckpt.state_dict) <= _keys(PARITY / "keys_sync.txt")
    assert ckpt.config is None


@needs_shared
def test_truncated_fixture(tmp_path):
    data = (PARITY / "official_format_stage2.pt").read_bytes()
    for n in (len(data) // 2, 200):
        bad = tmp_path / f"cut{n}.pt"
        bad.write_bytes(data[:n])
        with pytest.raises(SynchformerError, match="truncated or corrupt"):
            read_checkpoint(bad)


# --- containers made here -------------------------------------------------------------------------


def _tiny_state_dict(head: str = "off_head") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "vproj.weight": torch.randn(4, 4, generator=g),
        "vproj.bias": torch.randn(4, generator=g),
        f"transformer.{head}.weight": torch.randn(2, 4, generator=g),
        f"transformer.{head}.bias": torch.randn(2, generator=g),
    }


def test_module_prefixed_and_wrapped_state_dicts(tmp_path):
    sd = _tiny_state_dict("sync_head")
    ddp = {f"module.{k}": v for k, v in sd.items()}
    for i, obj in enumerate([ddp, {"state_dict": ddp}, {"model": sd, "epoch": 3}]):
        torch.save(obj, tmp_path / f"{i}.pth")
        ckpt = read_checkpoint(tmp_path / f"{i}.pth")
        assert ckpt.source_format == "state_dict" and ckpt.head == "synchronizability"
        assert set(ckpt.state_dict) == set(sd)
        assert all(torch.equal(ckpt.state_dict[k], sd[k]) for k in sd)


def test_normalise_in_memory_stage1_dict():
    raw = {"state_dict": {"module.v_encoder.cls_token": torch.zeros(1), "module.a_encoder.x": torch.ones(1),
                          "module.logit_scale": torch.tensor(1.0), "module.v_encoder.extra": torch.zeros(1)}}
    assert set(normalise_state_dict(raw)) == {"vfeat_extractor.cls_token", "afeat_extractor.x",
                                              "vfeat_extractor.extra"}
    with pytest.raises(SynchformerError, match="<mem>: .*not a tensor"):
        normalise_state_dict({"vproj.weight": [1.0]}, "<mem>")


def test_legacy_non_zip_format_loads(tmp_path):
    sd = _tiny_state_dict()
    torch.save(sd, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    ckpt = read_checkpoint(tmp_path / "old.pth")
    assert all(torch.equal(ckpt.state_dict[k], sd[k]) for k in sd)


def test_unrelated_tensors_name_the_expected_keys(tmp_path):
    torch.save({"conv1.weight": torch.zeros(2), "fc.bias": torch.zeros(2)}, tmp_path / "resnet.pth")
    with pytest.raises(SynchformerError, match="no Synchformer weights.*vfeat_extractor.*'conv1.weight'"):
        read_checkpoint(tmp_path / "resnet.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(SynchformerError, match="not a state dict"):
        read_checkpoint(tmp_path / "list.pth")


# --- hostile pickles ------------------------------------------------------------------------------


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("kind", ["system", "exec"])
def test_hostile_pickle_is_refused_and_not_run(tmp_path, monkeypatch, kind, legacy):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"
    payload = (
        _Evil(os.system, f"touch {marker}") if kind == "system"
        else _Evil(builtins.exec, f"open({str(marker)!r}, 'w').close()")
    )
    path = tmp_path / "evil.pt"
    torch.save({"model": _tiny_state_dict(), "args": payload}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(SynchformerError, match=r"refuses to load: the file wants to run `\w+\.(system|exec)`"):
        read_checkpoint(path)
    assert not marker.exists()


def test_defaultdict_with_unsafe_factory_is_refused(tmp_path):
    torch.save({"model": _tiny_state_dict(), "x": collections.defaultdict(torch.Tensor)}, tmp_path / "dd.pt")
    with pytest.raises(SynchformerError, match="refuses to load.*defaultdict"):
        read_checkpoint(tmp_path / "dd.pt")


def test_numpy_metrics_are_plain_data(tmp_path):
    np = pytest.importorskip("numpy")
    torch.save({"model": _tiny_state_dict(), "args": {}, "metrics": {"acc": np.float64(0.5), "a": np.arange(3)}},
               tmp_path / "np.pt")
    assert read_checkpoint(tmp_path / "np.pt").source_format == "official"
    torch.save({"model": _tiny_state_dict(), "m": np.array([print], dtype=object)}, tmp_path / "obj.pt")
    with pytest.raises(SynchformerError, match="refuses to load"):
        read_checkpoint(tmp_path / "obj.pt")


def test_raw_pickle_global_is_refused(tmp_path):
    # a hand-made legacy-format stream: the first pickle already asks for a global
    (tmp_path / "raw.pt").write_bytes(b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.")
    with pytest.raises(SynchformerError, match="wants to run `posix.system`"):
        read_checkpoint(tmp_path / "raw.pt")


# --- damaged or wrong files -----------------------------------------------------------------------


def test_missing_directory_empty_and_random(tmp_path):
    with pytest.raises(SynchformerError, match="file not found"):
        read_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(SynchformerError, match="is a directory"):
        read_checkpoint(tmp_path)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(SynchformerError, match="empty"):
        read_checkpoint(tmp_path / "empty.pt")
    rng = torch.Generator().manual_seed(1)
    noise = bytes(torch.randint(0, 256, (4096,), generator=rng, dtype=torch.uint8).tolist())
    for i, prefix in enumerate([b"", b"\x80\x02", b"PK\x03\x04"]):
        (tmp_path / f"noise{i}.pt").write_bytes(prefix + noise)
        with pytest.raises(SynchformerError) as err:
            read_checkpoint(tmp_path / f"noise{i}.pt")
        assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)


def test_truncated_zip_and_bad_safetensors(tmp_path):
    torch.save(_tiny_state_dict(), tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) - 100])
    with pytest.raises(SynchformerError, match="truncated or corrupt"):
        read_checkpoint(tmp_path / "cut.pth")

    save_safetensors(_tiny_state_dict(), tmp_path / "ok.safetensors", {"a": 1})
    good = (tmp_path / "ok.safetensors").read_bytes()
    for name, data in {
        "header.safetensors": (2**40).to_bytes(8, "little") + good[8:],  # absurd header size
        "json.safetensors": good[:8] + b"}" + good[9:],  # header is not JSON
        "short.safetensors": good[:-10],  # tensor data cut off
    }.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SynchformerError, match="not a valid safetensors file"):
            read_checkpoint(tmp_path / name)


def test_torchscript_archive_is_refused(tmp_path):
    # torch.load would pass a TorchScript archive (it has constants.pkl) on to torch.jit.load
    with zipfile.ZipFile(tmp_path / "ts.pt", "w") as z:
        z.writestr("ts/data.pkl", pickle.dumps({}, protocol=2))
        z.writestr("ts/constants.pkl", pickle.dumps((), protocol=2))
    with pytest.raises(SynchformerError, match="TorchScript"):
        read_checkpoint(tmp_path / "ts.pt")


# --- the package's own format ---------------------------------------------------------------------


def test_safetensors_round_trip_is_atomic(tmp_path):
    sd = _tiny_state_dict()
    sd["aproj.weight"] = sd["vproj.weight"]  # shares memory
    sd["aproj.bias"] = torch.arange(8.0)[::2]  # not contiguous
    config = {"model": {"n_layer": 3}, "classes": [-2.0, 2.0]}
    out = tmp_path / "w.safetensors"
    digest = save_safetensors(sd, out, config)
    assert digest == sha256sum(out) and len(digest) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]  # no temp file left
    ckpt = read_checkpoint(out)
    assert ckpt.source_format == "safetensors" and ckpt.head == "offset" and ckpt.config == config
    assert set(ckpt.state_dict) == set(sd)
    assert all(torch.equal(ckpt.state_dict[k], sd[k]) for k in sd)


def test_safetensors_protect_and_sidecar(tmp_path):
    src = tmp_path / "in.safetensors"
    save_safetensors(_tiny_state_dict(), src, {"v": 1})
    before = sha256sum(src)
    with pytest.raises(SynchformerError, match="refuses to overwrite"):
        save_safetensors(_tiny_state_dict(), src, {"v": 2}, protect=[src])
    assert sha256sum(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.safetensors"]

    # a safetensors file without our metadata takes its config from a sidecar .json
    from safetensors.torch import save_file

    other = tmp_path / "hf.safetensors"
    save_file({f"module.{k}": v for k, v in _tiny_state_dict().items()}, other)
    assert read_checkpoint(other).config is None
    other.with_suffix(".json").write_text('{"n_layer": 3}')
    ckpt = read_checkpoint(other)
    assert ckpt.config == {"n_layer": 3} and "vproj.weight" in ckpt.state_dict


def test_copied_fixture_round_trip(tmp_path):
    if not PARITY.is_dir():
        pytest.skip("parity fixtures (/work/shared/parity) are absent")
    src = tmp_path / "official.pt"
    shutil.copy(PARITY / "official_format_stage2.pt", src)
    ckpt = read_checkpoint(src)
    save_safetensors(ckpt.state_dict, tmp_path / "conv.safetensors", ckpt.config, protect=[src])
    again = read_checkpoint(tmp_path / "conv.safetensors")
    assert again.config == ckpt.config and again.head == "offset"
    assert all(torch.equal(again.state_dict[k], v) for k, v in ckpt.state_dict.items())


# --- the package's settings in a state dict --------------------------------------------------------


def test_the_packages_settings_are_read_apart_from_the_weights(tmp_path):
    """A centred model of the package writes `synchformer_settings` into its state dict; every container reads it
    as the checkpoint's `settings` (never as a weight, never ignored), whatever the prefix, wrapper or dtype; an
    unreadable one is refused in one line naming the file."""
    from synchformer.model import ModelConfig, Synchformer, save_model

    SETTINGS_KEY = "synchformer_settings"
    model = Synchformer(ModelConfig.tiny(center_segments=True))
    sd = model.state_dict()
    assert sd[SETTINGS_KEY].dtype == torch.uint8
    said = {"center_segments": True, "max_offset_sec": 2.0, "timing": "true"}
    variants = [sd, {f"module.{k}": v for k, v in sd.items()}, {"model": sd, "epoch": 3},
                {k: v.half() for k, v in sd.items()}]
    for i, obj in enumerate(variants):
        torch.save(obj, tmp_path / f"{i}.pth")
        ckpt = read_checkpoint(tmp_path / f"{i}.pth")
        assert ckpt.source_format == "state_dict" and ckpt.settings == said
        assert SETTINGS_KEY not in ckpt.state_dict and not ckpt.ignored_keys
        assert set(ckpt.state_dict) == set(sd) - {SETTINGS_KEY}
    save_model(model, tmp_path / "ours.safetensors")
    ckpt = read_checkpoint(tmp_path / "ours.safetensors")
    assert ckpt.settings == said and ckpt.config["model"]["center_segments"] is True
    assert SETTINGS_KEY not in Synchformer(ModelConfig.tiny()).state_dict()  # the reference's settings: no marker

    for bad in (torch.tensor([1.5, 2.0]), torch.tensor(list(b'{"centre": 1}'), dtype=torch.uint8),
                torch.tensor(list(b'{"timing": "early"}'), dtype=torch.uint8), torch.zeros(2, 2, dtype=torch.uint8)):
        torch.save({**sd, SETTINGS_KEY: bad}, tmp_path / "bad.pth")
        with pytest.raises(SynchformerError) as err:
            read_checkpoint(tmp_path / "bad.pth")
        msg = str(err.value)
        assert msg.startswith(str(tmp_path / "bad.pth")) and "unreadable" in msg and "\n" not in msg
