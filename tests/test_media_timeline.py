"""The file's timestamps are the truth: audio placed by them (gaps, overlaps, fragmented files, late starts,
format changes), one audio track at a time, and local paths read as files whatever they hold.

Every file here is made from an in-sync synthetic clip with PyAV; the end-to-end checks use the bundled models.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import threading

import av
import numpy as np
import pytest

import synchformer.io.decode as decode
from _shared import MEDIA
from synchformer.cli import main
from synchformer.constants import AUDIO_SR
from synchformer.errors import SynchformerError
from synchformer.io import load_av
from synchformer.model.bundled import SYNTHETIC_TINY
from synchformer.training.synth import make_sparse_clip
from timeline_media import decode_mono, joined, remux, ts_part, video_frames, with_tracks

BUNDLED = ["-w", str(SYNTHETIC_TINY)]  # the bundled offset model (with it: its gate and fine model)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """An in-sync 12 s clip (16 kHz mono AAC in MP4) and the faulty files made from it."""
    d = tmp_path_factory.mktemp("timeline")
    sync = d / "sync.mp4"
    make_sparse_clip(sync, 11, duration=12.0)
    wave = decode_mono(sync)
    frames = video_frames(sync)
    files = {
        "sync": sync,
        # audio packets between 1.0 and 1.6 s removed, the video untouched
        "gap": remux(sync, d / "gap.mp4", drop=lambda t: 1.0 <= t < 1.6),
        # the audio 0.6 s late, fragmented: its first packet stays at 0, the next at 0.68 s
        "frag": remux(sync, d / "frag.mp4", shift={"audio": 0.6},
                      options={"movflags": "frag_keyframe+empty_moov"}),
        "late": remux(sync, d / "late.mp4", shift={"audio": 0.6}),  # the same, not fragmented
        # the timestamps of a transport stream from a broadcast: everything 1.4 s in
        "ts": remux(sync, d / "late_start.ts", shift={"audio": 1.4, "video": 1.4}),
        # track 1 (eng) in sync, track 2 (deu) 0.6 s early, both default; track 2 at the higher bit rate, so
        # FFmpeg's "best" stream is track 2
        "two": with_tracks(sync, d / "two.mp4", [(wave, 48000, "eng", True), (wave[9600:], 96000, "deu", True)]),
        # the first 6 s as 16 kHz mono AAC, then 48 kHz stereo, in one transport stream
        "formats": joined(d / "formats.ts", ts_part(d / "a.ts", frames[:150], 0, wave[:96000], 16000, "mono"),
                          ts_part(d / "b.ts", frames[150:], 150, wave[96000:192000], 48000, "stereo")),
        # two transport streams joined where the second one's sound starts 0.5 s before the first one's ends
        "overlap": joined(d / "overlap.ts", ts_part(d / "c.ts", frames[:150], 0, wave[:96000], 16000, "mono"),
                          ts_part(d / "e.ts", frames[150:], 150, wave[88000:192000], 16000, "mono",
                                  audio_start_sec=5.5)),
    }
    files["wave"] = wave
    return files


def _predict(path, *args, capsys) -> dict:
    assert main(["predict", str(path), *BUNDLED, "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------------ decoding

def test_a_gap_is_silence_of_its_length_and_the_audio_after_it_stays_in_place(media):
    sync = load_av(media["sync"], size=None, crop=None)
    gap = load_av(media["gap"], size=None, crop=None)
    assert [(e.kind, round(e.at_sec, 3), round(e.duration_sec, 3)) for e in gap.audio_events] == \
        [("gap", 1.024, 0.576)]  # packets of 1024 samples: the last one kept ends at 1.024 s, the next is at 1.6
    a, b = sync.audio.numpy(), gap.audio.numpy()
    start, end = round(1.024 * AUDIO_SR), round(1.6 * AUDIO_SR)
    assert np.abs(b[start + 100:end - 100]).max() == 0  # silence where the file has no audio
    # after it (past the decoder's one frame of warm-up), the very samples of the in-sync file: not 0.64 s early
    assert np.abs(a[end + 2048:] - b[end + 2048:]).max() < 1e-4
    assert np.abs(a[:start - 2048] - b[:start - 2048]).max() < 1e-4


def test_a_fragmented_file_reads_as_its_timestamps_say(media):
    frag = load_av(media["frag"], size=None, crop=None)
    late = load_av(media["late"], size=None, crop=None)
    assert frag.origin_sec == pytest.approx(0.08) and late.origin_sec == 0.0  # its video starts at 0.08 s
    assert frag.start_sec == 0.0 and len(frag.frames) == len(late.frames)
    # both: the sound 0.6 s after the picture, sample for sample
    a, b = frag.audio.numpy(), late.audio.numpy()
    assert np.abs(a[12000:] - b[12000:]).max() < 1e-4
    assert np.abs(a[:9000]).max() == 0


def test_an_overlap_is_trimmed(media):
    clip = load_av(media["overlap"], size=None, crop=None)
    over = [e for e in clip.audio_events if e.kind == "overlap"]
    # 0.5 s, and the second stream's AAC priming and the first one's padding to a whole frame
    assert len(over) == 1 and 0.5 < over[0].duration_sec < 0.65 and over[0].at_sec == pytest.approx(6.0, abs=0.1)
    wave = media["wave"]
    # the second stream's sound from 6 s on plays at 6 s: what overlapped was cut from it, nothing shifted
    got = clip.audio.numpy()[round(6.5 * AUDIO_SR):round(9 * AUDIO_SR)]
    want = wave[round(6.5 * AUDIO_SR):round(9 * AUDIO_SR)]
    assert np.corrcoef(got, want)[0, 1] > 0.95


def test_a_format_change_mid_stream_is_resampled_not_a_traceback(media):
    clip = load_av(media["formats"], size=None, crop=None)
    change = [e for e in clip.audio_events if e.kind == "format"]
    assert len(change) == 1 and "16 kHz mono" in change[0].detail and "48 kHz stereo" in change[0].detail
    assert change[0].at_sec == pytest.approx(6.0, abs=0.15)
    got, want = clip.audio.numpy(), media["wave"]
    for lo, hi in ((1.0, 5.5), (6.5, 11.0)):  # both halves where they belong
        s = slice(round(lo * AUDIO_SR), round(hi * AUDIO_SR))
        assert np.corrcoef(got[s], want[s])[0, 1] > 0.95


def test_a_late_start_counts_from_the_first_video_frame(media):
    ts, sync = load_av(media["ts"], size=None, crop=None), load_av(media["sync"], size=None, crop=None)
    assert ts.origin_sec == pytest.approx(1.4) and ts.start_sec == 0.0
    assert len(ts.frames) == len(sync.frames)
    assert np.abs(ts.audio.numpy() - sync.audio.numpy()).max() < 1e-4
    part = load_av(media["ts"], start_sec=2.0, end_sec=6.8, size=None, crop=None)
    assert part.start_sec == 2.0 and len(part.frames) == 120
    assert np.array_equal(part.frames.numpy(), sync.frames[50:170].numpy())


@pytest.mark.skipif(not MEDIA.is_dir(), reason=f"shared test media not found ({MEDIA})")
def test_codec_timing_is_not_taken_for_gaps():
    """Vorbis in WebM stamps its long blocks 18 ms late against the samples before them, and the mp3, mp2, PCM and
    AAC clips are continuous: none of the shared clips has a gap or an overlap."""
    for path in sorted(MEDIA.glob("*.*")):
        if path.suffix in (".txt", ".tsv"):
            continue
        clip = load_av(path, size=None, crop=None)
        assert clip.audio_events == [], (path.name, clip.audio_events)


def test_a_whole_track_is_placed_by_its_timestamps(media):
    sync, gap = decode.load_audio(media["sync"]), decode.load_audio(media["gap"])
    assert len(gap) == len(sync)  # (joined end to end, it was 0.576 s shorter)
    end = round(1.6 * AUDIO_SR)
    assert np.abs(gap[end + 2048:] - sync[end + 2048:]).max() < 1e-4


# ------------------------------------------------------------------------------------------------ tracks

def test_tracks_are_chosen_as_players_choose_by_number_or_by_language(media, tmp_path):
    two = media["two"]
    tracks = decode.audio_tracks(two)
    assert [(t.number, t.language, t.default) for t in tracks] == [(1, "eng", True), (2, "deu", True)]
    assert decode.pick_audio_track(two).number == 1  # the first default one (FFmpeg's "best" is track 2)
    assert decode.pick_audio_track(two, 2).number == 2 == decode.pick_audio_track(two, "DEU").number
    assert decode.pick_audio_track(two, "2").stream_index == tracks[1].stream_index
    with pytest.raises(SynchformerError, match=r"has no audio track 3 \(it has 2: track 1 \(eng, aac"):
        decode.pick_audio_track(two, 3)
    with pytest.raises(SynchformerError, match="no audio track in the language 'fra'"):
        decode.pick_audio_track(two, "fra")
    wave = media["wave"]
    second = with_tracks(media["sync"], tmp_path / "second_default.mkv",
                         [(wave, 48000, "eng", False), (wave[9600:], 48000, "deu", True)])
    assert decode.pick_audio_track(second).number == 2  # the default one, though it is not first
    clip = load_av(two, size=None, crop=None, audio_track="deu")
    assert clip.audio_track.language == "deu"
    assert np.abs(clip.audio.numpy()[:-9600] - wave[9600:9600 + len(clip.audio) - 9600]).max() < 0.05


def test_predict_measures_the_default_track_names_it_and_measures_any_other(media, capsys):
    d = _predict(media["two"], capsys=capsys)
    assert d["audio_track"]["number"] == 1 and d["audio_track"]["language"] == "eng"
    assert abs(d["refined_offset_sec"]) <= 0.1
    d = _predict(media["two"], "--audio-track", "2", capsys=capsys)
    assert d["audio_track"]["language"] == "deu" and d["refined_offset_sec"] == pytest.approx(0.6, abs=0.1)
    assert main(["predict", str(media["two"]), *BUNDLED, "--json", "--audio-track", "all"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["audio_track"]["number"] for r in rows] == [1, 2]
    assert abs(rows[0]["refined_offset_sec"]) <= 0.1 and rows[1]["refined_offset_sec"] == pytest.approx(0.6, abs=0.1)
    assert main(["predict", str(media["two"]), *BUNDLED]) == 0
    assert "audio: track 1 (eng, aac, 1 ch, 16 kHz)" in capsys.readouterr().out
    assert main(["predict", str(media["two"]), *BUNDLED, "--audio-track", "fra"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no audio track in the language 'fra'" in err
    with pytest.raises(SystemExit):
        main(["predict", str(media["two"]), "--audio-track", "0"])


def test_fix_moves_only_the_measured_track(media, tmp_path, capsys):
    out = tmp_path / "fixed.mp4"
    assert main(["fix", str(media["two"]), "-o", str(out), *BUNDLED, "--audio-track", "2"]) == 0
    assert "audio track 2 (deu" in capsys.readouterr().out

    def packets(path, index):
        with av.open(str(path)) as c:
            return [(bytes(p), p.pts, p.dts) for p in c.demux(c.streams[index]) if p.size]

    assert packets(out, 1) == packets(media["two"], 1)  # track 1: bit for bit, at the same timestamps
    for track in ("1", "2"):  # both in sync now
        d = _predict(out, "--audio-track", track, capsys=capsys)
        assert abs(d["refined_offset_sec"]) <= 0.1, (track, d["refined_offset_sec"])


# ------------------------------------------------------------------------------------------------ predict

def test_the_gap_reads_in_sync_and_is_named(media, capsys):
    d = _predict(media["gap"], capsys=capsys)
    assert abs(d["refined_offset_sec"]) <= 0.1
    events = d["audio_timeline"]["events"]
    assert events == [{"kind": "gap", "at_sec": 1.024, "duration_sec": 0.576}]
    assert "stay in sync" in d["audio_timeline"]["meaning"] and d["audio_timeline"]["checked"] == "the whole file"
    holding = [w["index"] for w in d["windows"] if w["audio_events"]]
    assert holding and all(d["windows"][i]["start_sec"] < 1.6 for i in holding)
    assert main(["predict", str(media["gap"]), *BUNDLED]) == 0
    assert "audio timeline: gap at 1.02 s, 576 ms of no audio" in capsys.readouterr().out


def test_fix_says_one_shift_cannot_repair_a_gap(media, tmp_path, capsys):
    main(["fix", str(media["gap"]), "-o", str(tmp_path / "x.mp4"), *BUNDLED, "--force"])
    err = capsys.readouterr().err
    assert "one constant shift cannot repair a gap" in err and "gap at 1.02 s" in err


def test_the_fragmented_file_reads_its_true_offset(media, capsys):
    d = _predict(media["frag"], capsys=capsys)
    assert d["refined_offset_sec"] == pytest.approx(-0.6, abs=0.1)


def test_a_late_starting_stream_works_with_start_and_explain(media, capsys):
    assert main(["predict", str(media["ts"]), *BUNDLED, "--start", "0", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["windows"][0]["start_sec"] == 0.0 and d["offset_sec"] == 0.0
    assert main(["explain", str(media["ts"]), *BUNDLED, "--json", "--segments-only"]) == 0
    assert json.loads(capsys.readouterr().out)["window"] == {"start_sec": 0.0, "end_sec": 4.8}
    d = _predict(media["ts"], capsys=capsys)
    assert d["windows"][0]["start_sec"] == 0.0 and abs(d["refined_offset_sec"]) <= 0.1


def test_a_format_change_gives_a_result(media, capsys):
    d = _predict(media["formats"], capsys=capsys)
    assert abs(d["refined_offset_sec"]) <= 0.1
    assert any(e["kind"] == "format" for e in d["audio_timeline"]["events"])


# ------------------------------------------------------------------------------------------------ paths

def test_a_local_path_is_a_file_whatever_it_holds(media, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(media["sync"], tmp_path / "x.mp4")
    shutil.copy(media["late"], tmp_path / "file:x.mp4")  # FFmpeg read this name as x.mp4
    shutil.copy(media["late"], tmp_path / "12:30.mp4")  # ... and this one as the protocol "12"
    assert _predict("x.mp4", capsys=capsys)["offset_sec"] == 0.0
    for name in ("file:x.mp4", "12:30.mp4"):
        d = _predict(name, capsys=capsys)
        assert d["file"] == name and d["refined_offset_sec"] == pytest.approx(-0.6, abs=0.1)
    assert main(["predict", "-", *BUNDLED]) == 2
    assert "reading standard input is not supported" in capsys.readouterr().err
    # fix reads and writes such names as files too: the copy of file:x.mp4 (0.6 s late), moved into sync
    assert main(["fix", "file:x.mp4", "-o", "take:2.mp4", "--offset", "-0.6"]) == 0
    capsys.readouterr()
    assert abs(_predict("take:2.mp4", capsys=capsys)["refined_offset_sec"]) <= 0.1


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with byte ranges, as real web servers do (MP4 readers seek)."""

    def send_head(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return None
        size = os.path.getsize(path)
        m = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        a, b = (int(m.group(1)), int(m.group(2)) if m.group(2) else size - 1) if m else (0, size - 1)
        self.send_response(206 if m else 200)
        if m:
            self.send_header("Content-Range", f"bytes {a}-{b}/{size}")
        self.send_header("Content-Length", str(b - a + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        with open(path, "rb") as f:
            f.seek(a)
            import io

            return io.BytesIO(f.read(b - a + 1))

    def log_message(self, *args):
        pass


def test_a_url_is_read_as_a_stream_with_a_timeout(media, tmp_path, capsys, monkeypatch):
    shutil.copy(media["late"], tmp_path / "late.mp4")
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        d = _predict(f"{url}/late.mp4", capsys=capsys)
        assert d["file"] == f"{url}/late.mp4" and d["refined_offset_sec"] == pytest.approx(-0.6, abs=0.1)
        assert main(["predict", f"{url}/missing.mp4", *BUNDLED]) == 2
        assert "the URL cannot be read (Server returned 404 Not Found)" in capsys.readouterr().err
    finally:
        server.shutdown()
    # a server that accepts and never answers: one line after the timeout
    quiet = socket.socket()
    quiet.bind(("127.0.0.1", 0))
    quiet.listen(4)
    monkeypatch.setattr(decode, "NETWORK_TIMEOUT_SEC", 1)
    try:
        with pytest.raises(SynchformerError, match="the URL cannot be read \\(no answer within 1 s\\)"):
            decode.check_media(f"http://127.0.0.1:{quiet.getsockname()[1]}/x.mp4")
    finally:
        quiet.close()


@pytest.mark.skipif(not MEDIA.is_dir(), reason=f"shared test media not found ({MEDIA})")
def test_fix_says_what_the_output_container_leaves_out(tmp_path, capsys):
    ogv = MEDIA / "lego_robot__techslides_small.ogv"  # an Ogg skeleton stream beside the video and the audio
    assert main(["fix", str(ogv), "-o", str(tmp_path / "o.mkv"), "--offset", "0.2"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "left out #0 data (skeleton): an Ogg skeleton" in err
