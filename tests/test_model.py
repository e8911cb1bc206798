"""The model: shapes and key names on tiny configs; parity with the reference on the full-size model."""

import numpy as np
import pytest
import torch

import synchformer
from synchformer.model import ModelConfig, Synchformer, infer_config
from _shared import PARITY, REFERENCE, needs_shared, read_keys, seeded_state_dict


def tiny_inputs(cfg, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(b, cfg.n_segments, cfg.segment_frames, 3, cfg.image_size, cfg.image_size, generator=g) * 2 - 1
    audio = torch.randn(b, cfg.n_segments, 1, cfg.n_mels, cfg.mel_frames, generator=g)
    return video, audio


def test_tiny_shapes_and_batch_independence():
    cfg = ModelConfig.tiny()
    model = Synchformer(cfg).eval()
    video, audio = tiny_inputs(cfg)
    with torch.inference_mode():
        vf, af = model.extract_vfeats(video), model.extract_afeats(audio)
        logits = model(video, audio)
        single = model(video[1:], audio[1:])
    assert vf.shape == (2, 14, 8, 32) and af.shape == (2, 14, 6, 32) and logits.shape == (2, 21)
    torch.testing.assert_close(single[0], logits[1], atol=1e-5, rtol=1e-5)


def test_segments_are_encoded_independently():
    """Chunking segments (memory) and shifting windows (issue: shared segments) rely on this."""
    cfg = ModelConfig.tiny()
    model = Synchformer(cfg, segment_batch=1).eval()
    video, audio = tiny_inputs(cfg, b=1)
    with torch.inference_mode():
        one_by_one = model.extract_vfeats(video)
        model.segment_batch = 14
        chunked = model.extract_vfeats(video)
        first_three = model.extract_vfeats(video[:, :3])
    torch.testing.assert_close(one_by_one, chunked, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(first_three, chunked[:, :3], atol=1e-5, rtol=1e-5)


def test_centred_segments_ignore_what_a_window_shows_throughout(tmp_path):
    """center_segments (not in the reference): the sync transformer sees each window's features less their mean
    segment, so adding the same tokens to every segment (a background) changes nothing. Saved with the weights."""
    from synchformer.model import load_model, save_model

    g = torch.Generator().manual_seed(0)
    v, a = torch.randn(2, 14, 8, 32, generator=g), torch.randn(2, 14, 6, 32, generator=g)
    bv, ba = 3 * torch.randn(2, 1, 8, 32, generator=g), 3 * torch.randn(2, 1, 6, 32, generator=g)
    plain = Synchformer(ModelConfig.tiny()).eval()
    centred = Synchformer(ModelConfig.tiny(center_segments=True)).eval()
    centred.load_state_dict(plain.state_dict())  # the same weights: only the centring differs
    with torch.inference_mode():
        c0, c1 = centred.compare_v_a(v, a), centred.compare_v_a(v + bv, a + ba)
        p0, p1 = plain.compare_v_a(v, a), plain.compare_v_a(v + bv, a + ba)
    torch.testing.assert_close(c1, c0, atol=1e-5, rtol=1e-5)
    assert (p1 - p0).abs().max() > 1e-3 and (c0 - p0).abs().max() > 1e-3  # without it, the background counts
    save_model(centred, tmp_path / "centred.safetensors")
    again = load_model(tmp_path / "centred.safetensors")
    save_model(plain, tmp_path / "plain.safetensors")
    assert again.cfg.center_segments and not load_model(tmp_path / "plain.safetensors").cfg.center_segments
    with torch.inference_mode():
        torch.testing.assert_close(again.compare_v_a(v, a), c0)


def test_training_mode_has_gradients_everywhere_that_matters():
    cfg = ModelConfig.tiny()
    model = Synchformer(cfg).train()
    video, audio = tiny_inputs(cfg, b=1)
    model(video, audio).logsumexp(-1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    assert model.vfeat_extractor.patch_embed.proj.weight.requires_grad is False  # unused by the reference too


def test_wrong_shapes_are_refused():
    cfg = ModelConfig.tiny()
    model = Synchformer(cfg).eval()
    video, audio = tiny_inputs(cfg, b=1)
    with pytest.raises(ValueError, match="video must be"):
        model.extract_vfeats(video[:, :, :8])
    with pytest.raises(ValueError, match="audio must be"):
        model.extract_afeats(audio[..., :65])
    with pytest.raises(ValueError, match="windows of 14 segments"):
        model(video[:, :13], audio[:, :13])


def test_synchronizability_head():
    cfg = ModelConfig.tiny(n_segments=13, head="synchronizability")
    model = Synchformer(cfg).eval()
    keys = model.state_dict().keys()
    assert "transformer.sync_head.weight" in keys and "transformer.off_head.weight" not in keys
    assert model.transformer.pos_emb_cfg.pos_emb.shape[1] == 2 + 13 * (8 + 6)
    video, audio = tiny_inputs(cfg, b=1)
    with torch.inference_mode():
        assert model(video, audio).shape == (1, 2)


def test_stage3_trims_a_stage2_positional_table():
    stage2 = Synchformer(ModelConfig.tiny()).state_dict()
    stage2 = {k: v for k, v in stage2.items() if not k.startswith("transformer.off_head")}
    stage3 = Synchformer(ModelConfig.tiny(n_segments=13, head="synchronizability"))
    result = stage3.load_state_dict(stage2, strict=False)
    assert set(result.missing_keys) == {"transformer.sync_head.weight", "transformer.sync_head.bias"}
    torch.testing.assert_close(stage3.transformer.pos_emb_cfg.pos_emb, stage2["transformer.pos_emb_cfg.pos_emb"][:, :184])


@needs_shared
@pytest.mark.parametrize("key_file,head,n_segments", [
    ("keys_sync.txt", "offset", 14), ("keys_synchronizability.txt", "synchronizability", 13)])
def test_full_size_keys_and_shapes_match_the_reference(key_file, head, n_segments):
    with torch.device("meta"):
        model = Synchformer(ModelConfig(n_segments=n_segments, head=head))
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == read_keys(PARITY / key_file)
    if head == "offset":
        assert ours == read_keys(REFERENCE / "official_state_dict_keys.txt")
        assert sum(np.prod(s) for _, s in ours) == 237_460_245
    with torch.device("meta"):
        inferred = infer_config({k: torch.empty(s, device="meta") for k, s in ours})
    assert inferred == ModelConfig(n_segments=n_segments, head=head)


@pytest.mark.slow
@needs_shared
def test_parity_with_the_reference_stage2():
    expected = np.load(PARITY / "sync_expected.npz")
    model = synchformer.load_model(seeded_state_dict(PARITY / "keys_sync.txt", seed=1), config=ModelConfig())
    video, audio = torch.from_numpy(expected["video_input"]), torch.from_numpy(expected["audio_input"])
    with torch.inference_mode():
        vfeats, afeats = model.extract_vfeats(video), model.extract_afeats(audio)
        logits = model.compare_v_a(vfeats, afeats)
    np.testing.assert_allclose(vfeats.numpy(), expected["vfeats"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(afeats.numpy(), expected["afeats"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(logits.numpy(), expected["logits"], rtol=0, atol=1e-4)
    assert int(logits.argmax()) == int(expected["logits"].argmax())

    # our own preprocessing of the stored clip gives the same logits too
    clip = np.load(PARITY / "clip_pen_hits_coin.npz")
    v, a = synchformer.make_inputs(clip["video"], clip["audio"], start_sec=1.0, offset_sec=0.6)
    with torch.inference_mode():
        ours = model(v[None], a[None])
    np.testing.assert_allclose(ours.numpy(), expected["logits"], rtol=0, atol=1e-2)


@pytest.mark.slow
@needs_shared
def test_parity_with_the_reference_stage3():
    expected = np.load(PARITY / "sync_expected.npz")
    model = synchformer.load_model(seeded_state_dict(PARITY / "keys_synchronizability.txt", seed=1),
                                     config=ModelConfig.synchronizability())
    assert model.cfg.head == "synchronizability" and model.cfg.n_segments == 13
    with torch.inference_mode():
        logits = model(torch.from_numpy(expected["video_input"][:, :13]),
                       torch.from_numpy(expected["audio_input"][:, :13]))
    want = np.load(PARITY / "synchronizability_expected.npz")["logits"]
    np.testing.assert_allclose(logits.numpy(), want, rtol=0, atol=1e-4)
