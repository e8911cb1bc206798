"""The synthetic sparse-cue benchmark: events where and when they are said to be, sound shifted by the offset,
deterministic clips, and a benchmark folder that is resumed but never overwritten."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest

import synchformer.cli.synth as synth_cli
from synchformer.errors import SynchformerError
from synchformer.io.decode import load_av
from synchformer.training.synth import Cues, _plan, ceiling, crop_row, make_sparse_clip, synth

SEED, OFFSET = 3, 0.6  # seed 3 has flashes, hits and bounces


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "clip.mp4"
    info = make_sparse_clip(path, SEED, offset_sec=OFFSET)
    decoded = load_av(path, 0, None, size=None, crop=None)
    frames = decoded.frames.permute(0, 2, 3, 1).float().numpy()  # (T, H, W, 3)
    return info, frames, decoded.audio.numpy(), _plan(SEED, 10.0, 96, OFFSET)


def _mask(sprite, k, size=96):
    cx, cy = sprite.centre(k)
    x, y = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    if sprite.shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= (sprite.hx - 1) ** 2  # inner pixels: edges blur in H.264
    return (np.abs(x - cx) <= sprite.hx - 1) & (np.abs(y - cy) <= sprite.hy - 1)


def _shows(frame, sprite, k):
    """The decoded frame has the sprite's colour where the plan puts it at frame k."""
    return np.abs(frame[_mask(sprite, k)] - sprite.colour).mean() < 30


def test_lengths_and_returned_info(clip):
    info, frames, audio, plan = clip
    assert frames.shape == (250, 96, 96, 3) and audio.shape == (250 * 640,)
    assert info == {"events": plan.events, "kinds": plan.kinds, "offset_sec": OFFSET}
    assert set(info["kinds"]) == {"flash", "hit", "bounce"}


def test_pictures_change_exactly_at_the_events(clip):
    info, frames, _, plan = clip
    for t, kind, actor in zip(info["events"], info["kinds"], plan.actors):
        f = round(t * 25)
        assert _shows(frames[f], actor, f), (t, kind)
        if kind == "flash":  # appears at f, gone two frames later: a big brightness change both times
            region = _mask(actor, f)
            assert np.abs(frames[f] - frames[f - 1])[region].mean() > 60
            assert np.abs(frames[f + 2] - frames[f + 1])[region].mean() > 60
        elif kind == "hit":  # touches the bottom or a side edge at f, not before; then gone or at rest
            def gap(k):
                x, y = actor.centre(k)
                return min(96 - y, x, 96 - x) - actor.hx
            assert gap(f) == pytest.approx(0, abs=1e-9) and gap(f - 1) > 0.5
            assert actor.last == f or actor.centre(f + 1) == actor.centre(f)
        else:  # bounce: nearest the bar at f, the same distance one frame before and after (reversal)
            bar = plan.sprites[plan.sprites.index(actor) - 1]

            def dist(k):
                return np.abs(np.subtract(actor.centre(k), bar.centre(k))).max()
            assert dist(f - 1) > dist(f) + 0.5 and dist(f + 1) == pytest.approx(dist(f - 1))
            assert _shows(frames[f], bar, f)


def test_sounds_lead_the_pictures_by_the_offset(clip):
    info, _, audio, _ = clip
    loud = np.abs(audio) > 0.3  # events peak at 0.5-0.8; noise and unpictured sounds stay under 0.25
    heard = 0
    for t in info["events"]:
        start = t - OFFSET
        if start < 0:  # its sound would play before the clip starts
            continue
        window = loud[int((start - 0.2) * 16000):int((start + 0.2) * 16000)]
        onset = start - 0.2 + np.argmax(window) / 16000
        assert window.any() and onset == pytest.approx(start, abs=0.02), t
        loud[int((start - 0.02) * 16000):int((start + 0.1) * 16000)] = False
        heard += 1
    assert heard >= 6 and not loud.any()  # and nothing else is that loud


def test_event_rules_over_many_seeds():
    kinds = set()
    for seed in range(40):
        plan = _plan(seed, 12.0, 96, 0.0)
        t = np.array(plan.events)
        assert np.all(np.diff(t) >= 0.4 - 1e-9) and t[0] >= 0.1 and t[-1] <= 12.0 - 0.1
        for start in (0, 5):  # the full stretches; the last 2 s may hold fewer
            assert 1 <= np.sum((t >= start) & (t < start + 5)) <= 4
        assert np.allclose(t * 25, np.round(t * 25))  # on the frame grid
        kinds |= set(plan.kinds)
    assert kinds == {"flash", "hit", "bounce"}


def test_crop_rows_start_the_video_on_their_frame():
    # readers (the reference too) start the video at int(vstart_sec * 25): that must be the frame synth meant
    starts = [crop_row(seed, 10.0)[1] for seed in range(2000)]
    frames = [int(v * 25) for v in starts]
    assert all(abs(v * 25 - f) < 0.01 for v, f in zip(starts, frames))
    assert sum(v != round(v, 2) for v in starts) > 20  # values such as 1.16, which int() floors to 28, occur


def test_same_seed_same_clip(tmp_path):
    infos, frames = [], []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        infos.append(make_sparse_clip(tmp_path / f"{name}.mp4", seed, duration=5.0, size=64))
        frames.append(load_av(tmp_path / f"{name}.mp4", 0, None, size=None, crop=None).frames)
    assert infos[0] == infos[1] and frames[0].equal(frames[1])
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()  # x264 made deterministic
    assert infos[0] != infos[2] and not frames[0].equal(frames[2])
    with pytest.raises(SynchformerError, match="already exists"):
        make_sparse_clip(tmp_path / "a.mp4", 7, duration=5.0, size=64)


def test_synth_folder_resumed_never_overwritten(tmp_path, capsys):
    out = tmp_path / "bench"
    parser = argparse.ArgumentParser()
    args = synth_cli.add_parser(parser.add_subparsers()).parse_args
    assert synth_cli.run(args([str(out), "--n", "3", "--duration", "6", "--size", "48"])) == 0
    assert "3 clips" in capsys.readouterr().out

    names = sorted(p.name for p in out.iterdir())
    assert names == ["clip_00000.mp4", "clip_00001.mp4", "clip_00002.mp4", "clips.csv", "events.jsonl",
                     "synth.json"]
    rows = list(csv.DictReader(open(out / "clips.csv")))
    assert [r["path"] for r in rows] == names[:3]
    for r in rows:
        off, vstart = float(r["offset_sec"]), float(r["vstart_sec"])
        assert round(off * 5) == pytest.approx(off * 5) and abs(off) <= 1.0  # grid points that fit in 6 s
        assert vstart >= 0 and vstart + off >= -1e-9 and max(vstart, vstart + off) + 5 <= 6 + 1e-9
        assert round(vstart * 25) == pytest.approx(vstart * 25, abs=0.01) == int(vstart * 25)
    events = [json.loads(line) for line in open(out / "events.jsonl")]
    assert [e["path"] for e in events] == names[:3] and all(e["events"] for e in events)

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "clip_00001.mp4").unlink()  # an interrupted run: the missing clip is made again, the rest kept
    synth(out, 3, duration=6, size=48, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "clip_00001.mp4"} == \
           {k: v for k, v in mtimes.items() if k != "clip_00001.mp4"}
    assert (out / "clip_00001.mp4").exists()

    with pytest.raises(SynchformerError, match="other arguments"):
        synth(out, 3, seed=1, duration=6, size=48, progress=False)
    with pytest.raises(SynchformerError, match="at least 5"):
        synth(tmp_path / "short", 3, duration=3, progress=False)


def _bench(folder, rows):
    """A synth-style folder from (events, offset_sec, vstart_sec) rows, without videos."""
    folder.mkdir()
    (folder / "events.jsonl").write_text("".join(
        json.dumps({"path": f"c{i}.mp4", "events": ev, "kinds": ["flash"] * len(ev)}) + "\n"
        for i, (ev, _, _) in enumerate(rows)))
    (folder / "clips.csv").write_text("path,offset_sec,vstart_sec\n" + "".join(
        f"c{i}.mp4,{off},{vstart}\n" for i, (_, off, vstart) in enumerate(rows)))
    return folder / "clips.csv"


def test_ceiling_counts_the_offsets_the_events_allow(tmp_path):
    # windows: video [vstart + 0.08, + 4.8), audio the same shifted by the offset
    two_events = ([3.0, 4.0], 0.6, 1.0)  # both seen in both windows: only +0.6 lines them up
    none_seen = ([0.2, 9.8], -1.0, 2.0)  # nothing in either window: all 21 offsets are possible
    csv_path = _bench(tmp_path / "a", [two_events, none_seen])
    res = ceiling(csv_path)
    assert res["clips"] == 2 and res["unique"] == 0.5
    assert res["accuracy_1"] == pytest.approx((1 + 1 / 21) / 2)
    assert res["accuracy_1_tol1"] == pytest.approx((1 + 3 / 21) / 2)

    # heard at 3.92 s into the audio window, seen 0.12 s after the video window ends: any offset that would
    # put the picture inside the video window is ruled out, which leaves +1.0 .. +2.0
    just_outside = ([6.0], 1.0, 1.0)
    res = ceiling(_bench(tmp_path / "b", [just_outside]))
    assert res["accuracy_1"] == pytest.approx(1 / 6) and res["accuracy_1_tol1"] == pytest.approx(3 / 6)
    # a model that sees the ball coming (margin) pins it down
    assert ceiling(tmp_path / "b" / "clips.csv", margin_sec=0.64)["accuracy_1"] == 1.0

    with open(tmp_path / "b" / "clips.csv", "a") as fh:
        fh.write("other.mp4,0.0,1.0\n")
    with pytest.raises(SynchformerError, match="'other.mp4', which events.jsonl does not"):
        ceiling(tmp_path / "b" / "clips.csv")
    (tmp_path / "b" / "events.jsonl").unlink()
    with pytest.raises(SynchformerError, match="no events.jsonl"):
        ceiling(tmp_path / "b" / "clips.csv")


def test_ceiling_of_pooled_windows_needs_every_window_to_agree(tmp_path):
    # one event at 8 s: the window at 0 s sees nothing (any offset fits), the one at 4 s pins the offset
    csv_path = _bench(tmp_path / "a", [([8.0], 0.0, 0.0)])
    assert ceiling(csv_path)["accuracy_1"] == pytest.approx(1 / 21)
    both = {str(tmp_path / "a" / "c0.mp4"): [0.0, 4.0]}
    assert ceiling(csv_path, windows=both)["accuracy_1"] == 1.0
    assert ceiling(csv_path, windows={str(tmp_path / "a" / "c0.mp4"): [0.0, 0.32]})["accuracy_1"] == pytest.approx(1 / 21)


def test_easier_cues_make_a_curriculum(tmp_path):
    easy = Cues(events=(1, 1), distractors=(0, 0), quiet_sounds=(0, 0), noise=False)
    for seed in range(5):
        plan = _plan(seed, 10.0, 64, 0.0, easy)
        assert len(plan.events) == 2  # one per 5 s stretch
        assert all(sp in plan.actors or sp.shape == "rect" for sp in plan.sprites)  # events only (and bars)
        quiet = np.ones(len(plan.audio), bool)
        for t in plan.events:
            quiet[round(t * 16000):round((t + 0.08) * 16000)] = False
        assert np.abs(plan.audio[quiet]).max() == 0  # no noise, no stray sounds
    assert len(_plan(0, 10.0, 64, 0.0).sprites) > len(_plan(0, 10.0, 64, 0.0, easy).sprites)

    out = tmp_path / "easy"
    parser = argparse.ArgumentParser()
    args = synth_cli.add_parser(parser.add_subparsers()).parse_args
    assert synth_cli.run(args([str(out), "--n", "1", "--duration", "5", "--size", "32", "--events", "1,1",
                               "--distractors", "0,0", "--quiet-sounds", "0,0", "--no-noise"])) == 0
    assert json.loads((out / "synth.json").read_text())["cues"] == {
        "events": [1, 1], "distractors": [0, 0], "quiet_sounds": [0, 0], "noise": False}
    with pytest.raises(SynchformerError, match="other arguments"):  # a folder holds one difficulty
        synth(out, 1, duration=5, size=32, progress=False)
    with pytest.raises(SystemExit):  # refused while the command line is read
        args([str(tmp_path / "bad"), "--events", "3,1"])
    with pytest.raises(ValueError, match="events must be a range"):  # and by Cues itself
        Cues(events=(3, 1))


def test_linked_sounds_give_each_event_kind_its_own_sound():
    # a tone is one narrow spectral peak, a noise burst is flat, a click train is a comb of its click rate
    def flatness(x):
        p = np.abs(np.fft.rfft(x)) ** 2 + 1e-12
        return np.exp(np.log(p).mean()) / p.mean()

    linked, free = Cues(quiet_sounds=(0, 0), noise=False, linked_sounds=True), Cues(quiet_sounds=(0, 0), noise=False)
    by_kind: dict[str, list[float]] = {"flash": [], "hit": [], "bounce": []}
    for seed in range(12):
        a, b = _plan(seed, 10.0, 64, 0.0, linked), _plan(seed, 10.0, 64, 0.0, free)
        assert a.events == b.events and a.kinds == b.kinds  # only the sounds differ
        for t, kind in zip(a.events, a.kinds):
            s = round(t * 16000)
            by_kind[kind].append(flatness(a.audio[s:s + 640]))
    assert all(len(v) >= 3 for v in by_kind.values())
    assert max(by_kind["flash"]) < min(by_kind["hit"])  # tones are peaky, noise bursts are flat
    assert set(np.round(by_kind["flash"], 6)) != set(np.round(by_kind["hit"], 6))


def test_continuous_offsets_are_in_the_files_and_the_csv_holds_the_truth(tmp_path):
    from synchformer.training.data import read_clip_list
    from synchformer.training.synth import continuous_offset, clip_seed, in_file_offsets

    csv_path = synth(tmp_path / "c", 2, seed=5, duration=10.0, offsets="continuous", progress=False)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "offset_sec", "in_file"]
    truth = in_file_offsets(csv_path)
    offsets = [continuous_offset(clip_seed(5, i)) for i in range(2)]
    assert list(truth.values()) == offsets and all(abs(o) <= 1.5 for o in offsets)
    assert len({round(o, 1) for o in offsets}) == 2 and any(abs(o * 5 - round(o * 5)) > 0.05 for o in offsets)
    # the file itself is out of sync: its events' sounds start offset_sec before their pictures
    path, off = next(iter(truth.items()))
    plan = _plan(clip_seed(5, 0), 10.0, 96, off)
    audio = load_av(path, 0, None, size=None, crop=None).audio.numpy()
    loud = np.abs(audio) > 0.3
    heard = 0
    for t in plan.events:
        start = t - off
        if 0.25 < start < 9.7:
            window = loud[int((start - 0.2) * 16000):int((start + 0.2) * 16000)]
            assert window.any() and start - 0.2 + np.argmax(window) / 16000 == pytest.approx(start, abs=0.02)
            heard += 1
    assert heard >= 1
    with pytest.raises(SynchformerError, match="offset is in the file"):  # not crops to train on
        read_clip_list(csv_path)
    assert in_file_offsets(tmp_path / "c") is None  # a folder, or a class-offset CSV: None
