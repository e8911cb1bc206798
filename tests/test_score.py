"""`synchformer score` and synchformer.inference.score: av-benchmark's DeSync over many files, resumable rows,
external audio, parallel decoding, torchrun sharding (tiny model, short synthetic clips)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import synchformer
from synchformer.cli import main
from synchformer.errors import SynchformerError
from synchformer.inference.analysis import Analysis
from synchformer.inference.analyze import analyze
from synchformer.inference.score import columns, desync_of, read_inputs, score_files, summarize_rows
from synchformer.model import ModelConfig, Synchformer, save_model
from _shared import MEDIA, needs_shared

FPS, SR = 25, 16000


def write_clip(path, sec: float, seed: int, audio: bool = True, size: int = 64):
    """Noise frames with random flashes, and a tone burst at each flash (the decoder scales 64 px up)."""
    rng = np.random.default_rng(seed)
    n = int(sec * FPS)
    flashes = rng.random(n) < 0.1
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=FPS)
        vs.width = vs.height = size
        vs.pix_fmt = "yuv420p"
        if audio:
            aus = out.add_stream("pcm_s16le", rate=SR, layout="mono")
        for i in range(n):
            img = rng.integers(0, 60, (size, size, 3)) + (180 if flashes[i] else 0)
            frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        if audio:
            wave = rng.normal(0, 0.01, int(sec * SR))
            for i in np.nonzero(flashes)[0]:
                s = int(i / FPS * SR)
                wave[s:s + 400] += 0.5 * np.sin(np.arange(len(wave[s:s + 400])) / 3)
            frame = av.AudioFrame.from_ndarray((np.clip(wave, -1, 1) * 32767).astype(np.int16)[None], format="s16",
                                               layout="mono")
            frame.sample_rate, frame.pts = SR, 0
            out.mux(aus.encode(frame))
            out.mux(aus.encode(None))
    return path


def write_wav(path, samples: np.ndarray):
    with av.open(str(path), "w") as out:
        st = out.add_stream("pcm_f32le", rate=SR, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.asarray(samples, np.float32)[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts = SR, 0
        out.mux(st.encode(frame))
        out.mux(st.encode(None))
    return path


@pytest.fixture(autouse=True)
def one_thread():
    # the test machine is small and shared: more threads only slow the tiny model down
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Synchformer(ModelConfig.tiny()).eval()


@pytest.fixture(scope="module")
def data(tmp_path_factory, model):
    """clips/: two good 6 s clips (one in a subfolder), a 3 s one (too short), a file that is not a video."""
    root = tmp_path_factory.mktemp("score")
    (root / "clips" / "sub").mkdir(parents=True)
    write_clip(root / "clips" / "a.mkv", 6, seed=1)
    write_clip(root / "clips" / "sub" / "b.mkv", 6, seed=2)
    write_clip(root / "clips" / "short.mkv", 3, seed=3)
    (root / "clips" / "bad.mp4").write_bytes(b"not a video" * 100)
    save_model(model, root / "tiny.safetensors")
    return root


def cli(data, *args) -> int:
    return main(["score", *map(str, args), "--weights", str(data / "tiny.safetensors"), "--workers", "0",
                 "--no-progress", "--device", "cpu"])


def by_hand(model, video, audio=None):
    """av-benchmark's recipe written out: argmax class of the first and the last window, |offset|, mean."""
    a = analyze(model, video, ends_only=True, size=224, audio=audio)
    offsets = a.grid[a.logits.argmax(-1)]
    return float(np.mean(np.abs([offsets[0], offsets[-1]]))), a


def assert_same_row(got: dict, want: dict, tol: float = 1e-6):
    assert list(got) == list(want)
    for k, w in want.items():
        if isinstance(w, float) and isinstance(got[k], float):
            assert got[k] == pytest.approx(w, abs=tol), k
        else:
            assert got[k] == w, k


def test_read_inputs(tmp_path):
    (tmp_path / "v" / "deep").mkdir(parents=True)
    (tmp_path / "gen").mkdir()
    for name in ["v/x.mp4", "v/deep/y.MOV", "v/notes.txt", "gen/x.flac"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.csv").write_text("id,video,audio\nfirst,v/x.mp4,gen/x.flac\n,v/deep/y.MOV,\n")
    items = read_inputs([tmp_path / "v"])
    assert [os.path.relpath(it.video, tmp_path) for it in items] == ["v/deep/y.MOV", "v/x.mp4"]
    assert read_inputs([str(tmp_path / "v" / "*.mp4")])[0].id == "x"  # a glob
    items = read_inputs([tmp_path / "list.csv"])  # paths relative to the CSV's folder
    assert [(it.id, it.video, it.audio) for it in items] == [
        ("first", str(tmp_path / "v/x.mp4"), str(tmp_path / "gen/x.flac")), ("y", str(tmp_path / "v/deep/y.MOV"), None)]
    paired = read_inputs([tmp_path / "v"], audio_dir=tmp_path / "gen")
    assert paired[1].audio == str(tmp_path / "gen" / "x.flac")
    assert paired[0].audio is None and "no audio file y." in paired[0].error  # becomes an error row
    both = read_inputs([tmp_path / "v", tmp_path / "v" / "x.mp4", tmp_path / "list.csv"])
    assert len(both) == 3  # duplicates (same video and audio) once; x.mp4 with x.flac is another pair
    assert read_inputs([tmp_path / "gone.mp4"])[0].video.endswith("gone.mp4")  # a missing video: an error row
    for bad in [tmp_path / "gone.csv", tmp_path / "no_such_folder"]:
        with pytest.raises(SynchformerError):
            read_inputs([bad])
    (tmp_path / "nocol.csv").write_text("file\nv/x.mp4\n")
    with pytest.raises(SynchformerError, match="'path' or 'video' column"):
        read_inputs([tmp_path / "nocol.csv"])


def test_desync_of_is_mean_abs_argmax_offset_of_first_and_last_window():
    grid = np.linspace(-2, 2, 21, dtype=np.float32)
    logits = np.zeros((3, 21), np.float32)
    logits[0, 13], logits[1, 0], logits[2, 8] = 3.0, 5.0, 2.0  # +0.6 s, (middle window: ignored), -0.4 s
    a = Analysis(path="x", hop_sec=2.4, window_starts=np.array([0.0, 2.56, 3.2]), logits=logits, grid=grid)
    d = desync_of(a)
    assert (d["desync_sec"], d["first_offset_sec"], d["last_offset_sec"]) == (0.5, 0.6, -0.4)
    assert d["last_start_sec"] == 3.2
    assert d["first_probability"] == pytest.approx(np.exp(3) / (np.exp(3) + 20), abs=1e-6)


def test_rows_for_every_input_and_desync_by_hand(data, model):
    clips = data / "clips"
    rows = list(score_files(model, [clips / "a.mkv", clips / "bad.mp4", clips / "short.mkv", clips / "gone.mp4",
                                    clips / "sub" / "b.mkv"]))
    assert [r["status"] for r in rows] == ["ok", "error", "error", "error", "ok"]
    assert all(list(r) == list(columns("desync")) for r in rows)
    assert "too short" in rows[2]["error"] and "file not found" in rows[3]["error"]
    assert all(r["error"].startswith(str(clips)) and "\n" not in r["error"] for r in rows[1:4])
    for row in (rows[0], rows[4]):
        expected, a = by_hand(model, row["video"])
        assert row["desync_sec"] == pytest.approx(expected, abs=1e-6)
        assert (row["n_segments"], row["n_windows"], row["duration_sec"]) == (17, 2, 5.76)
        assert (row["first_start_sec"], row["last_start_sec"]) == (0.0, 0.96)  # segments 0-13 and 3-16
        k = a.logits.argmax(-1)
        assert row["first_offset_sec"] == pytest.approx(a.grid[k[0]], abs=1e-6)
        assert row["last_probability"] == pytest.approx(a.probs[-1, k[-1]], abs=1e-6)
    # the first and the last window of a full analysis are av-benchmark's two windows as well
    full = analyze(model, clips / "a.mkv", hop_sec=0.32, size=224)
    assert desync_of(full) == {k: rows[0][k] for k in desync_of(full)}
    s = summarize_rows(rows)
    assert (s["clips"], s["scored"], s["failed"]) == (5, 2, 3)
    assert s["desync_mean"] == pytest.approx((rows[0]["desync_sec"] + rows[4]["desync_sec"]) / 2)


def test_external_audio(data, model, tmp_path):
    video = data / "clips" / "a.mkv"
    own = synchformer.load_av(video, size=224).audio.numpy()
    pairs = [video, (video, write_wav(tmp_path / "own.wav", own)),
             (video, write_wav(tmp_path / "silent.wav", np.zeros_like(own))),
             (video, write_wav(tmp_path / "shorter.wav", own[:int(5.2 * SR)])), (video, tmp_path / "gone.wav")]
    alone, same, silent, shorter, missing = score_files(model, pairs)
    assert same["audio"] == str(tmp_path / "own.wav") and same["status"] == "ok"
    # one video with five sounds: five ids, the audio's name telling them apart
    assert [r["id"] for r in (alone, same, silent, shorter, missing)] == [
        "a.mkv", "a.mkv+own.wav", "a.mkv+silent.wav", "a.mkv+shorter.wav", "a.mkv+gone.wav"]
    assert_same_row({**same, "audio": None, "id": alone["id"]}, alone, tol=1e-5)
    assert silent["first_probability"] != pytest.approx(alone["first_probability"], abs=1e-5)
    expected, _ = by_hand(model, video, audio=np.zeros_like(own))
    assert silent["desync_sec"] == pytest.approx(expected)
    assert shorter["n_segments"] == 15  # the analysed span is the shorter of the two
    assert missing["status"] == "error" and "gone.wav: file not found" in missing["error"]
    cut = next(score_files(model, [video], duration=5.0))  # av-benchmark's --audio_length: 125 frames
    assert (cut["n_segments"], cut["n_windows"], cut["duration_sec"]) == (14, 1, 4.8)
    assert cut["first_offset_sec"] == cut["last_offset_sec"]  # one window, counted twice


def test_parallel_decoding_gives_the_same_rows(data, model):
    clips = sorted((data / "clips").rglob("*.m*"))
    assert list(score_files(model, clips, workers=2)) == list(score_files(model, clips, workers=0))


@pytest.fixture(scope="module")
def mixed(data):
    """Files of three lengths between a missing one and a non-video, so that files finish out of order."""
    root = data / "mixed"
    root.mkdir(exist_ok=True)
    files = [write_clip(root / "long.mkv", 11, seed=4), data / "clips" / "bad.mp4",
             write_clip(root / "mid.mkv", 8, seed=5), root / "gone.mkv", data / "clips" / "a.mkv",
             data / "clips" / "short.mkv", write_clip(root / "seven.mkv", 7, seed=6)]
    return files


@pytest.mark.parametrize("metric", ["desync", "offset"])
def test_files_in_flight_share_encoder_calls_and_give_the_same_rows(mixed, model, metric, monkeypatch):
    import synchformer.inference.batching as batching

    calls = []
    real = batching.encode_chunk

    def counting(m, chunk, batch):
        calls.append((len(chunk), batch))
        return real(m, chunk, batch=batch)

    monkeypatch.setattr(batching, "encode_chunk", counting)
    alone = list(score_files(model, mixed, metric=metric, workers=0, hop_sec=0.64, batch_size=64))
    one_file = max(n for n, _ in calls)  # the most one file asks for at once
    calls.clear()
    shared = list(score_files(model, mixed, metric=metric, workers=3, files_in_flight=3, batch_size=64, hop_sec=0.64))
    # rows in input order, errors where they were, numbers the same up to float rounding
    assert [r["video"] for r in shared] == [str(p) for p in mixed]
    assert [r["status"] for r in shared] == ["ok", "error", "ok", "error", "ok", "error", "ok"]
    for got, want in zip(shared, alone):
        assert_same_row(got, want, tol=1e-5)
    # the segments of several files went through one call: more than any single file's request
    assert max(n for n, _ in calls) > one_file and all(b == 64 for _, b in calls)


def test_many_files_analysed_together_equal_one_at_a_time(mixed, model):
    """predict over many files (analyze_files): each Analysis as analyze gives it, with a synchronizability
    model too, in input order with the errors in place, whether files share encoder calls or not."""
    from synchformer.inference.score import analyze_files

    torch.manual_seed(1)
    sync_model = Synchformer(ModelConfig.tiny(head="synchronizability", n_segments=13)).eval()
    got = list(analyze_files(model, mixed, hop_sec=0.64, sync_model=sync_model, workers=3, files_in_flight=3,
                             batch_size=64))
    assert [v for v, _ in got] == [str(p) for p in mixed]
    kinds = ["ok" if isinstance(r, Analysis) else "error" for _, r in got]
    assert kinds == ["ok", "error", "ok", "error", "ok", "error", "ok"]
    for video, result in got:
        if isinstance(result, SynchformerError):
            with pytest.raises(SynchformerError) as e:
                analyze(model, video, hop_sec=0.64, sync_model=sync_model)
            assert Path(video).name in str(result) and str(e.value).split(": ", 1)[1] in str(result)
            continue
        want = analyze(model, video, hop_sec=0.64, sync_model=sync_model)
        assert np.array_equal(result.window_starts, want.window_starts) and result.path == want.path
        assert np.allclose(result.logits, want.logits, atol=1e-5)
        assert np.allclose(result.sync_probs, want.sync_probs, atol=1e-5)
        assert result.summarize().to_dict()["offset_sec"] == want.summarize().to_dict()["offset_sec"]


def test_predict_with_decoding_workers_prints_what_one_process_prints(data, mixed, capsys):
    videos = [str(p) for p in mixed if p.exists() and p.suffix == ".mkv" and "short" not in p.name]
    base = ["predict", *videos, "--json", "--weights", str(data / "tiny.safetensors"), "--device", "cpu",
            "--syncability-weights", "none"]
    assert main(base + ["--workers", "0"]) == 0
    alone = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(base + ["--workers", "2"]) == 0
    parallel = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in parallel] == videos and len(alone) == len(videos)
    for got, want in zip(parallel, alone):
        assert got["offset_sec"] == want["offset_sec"] and got["n_windows"] == want["n_windows"]
        assert got["refined_offset_sec"] == pytest.approx(want["refined_offset_sec"], abs=1e-3)
        assert np.allclose(got["distribution"], want["distribution"], atol=1e-4)
    with pytest.raises(SystemExit) as exit_:  # refused while the command line is read
        main(base + ["--workers", "-1"])
    assert exit_.value.code == 2
    assert "argument --workers: expected a whole number >= 0, got '-1'" in capsys.readouterr().err


def test_an_out_of_memory_error_halves_the_batch_and_the_rows_stand(mixed, model, monkeypatch, capsys):
    import synchformer.inference.batching as batching

    real, sizes = batching.encode_chunk, []

    def small_gpu(m, chunk, batch):  # a GPU that holds 16 segments per call
        sizes.append(batch)
        if batch > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(m, chunk, batch=batch)

    want = list(score_files(model, mixed, workers=0))
    monkeypatch.setattr(batching, "encode_chunk", small_gpu)
    got = list(score_files(model, mixed, workers=2, files_in_flight=2, batch_size=64))
    for g, w in zip(got, want, strict=True):
        assert_same_row(g, w, tol=1e-5)
    assert sizes[:3] == [64, 32, 16] and set(sizes[3:]) == {16}  # halved twice, then kept for the run
    err = capsys.readouterr().err
    assert err.count("ran out of memory") == 2 and "encoding 16 segments per call" in err


def test_cli_jsonl_resume_overwrite_and_csv(data, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert cli(data, data / "clips", "-o", out, "--summary-json", tmp_path / "s.json") == 0  # despite bad files
    full = out.read_text()
    rows = [json.loads(line) for line in full.splitlines()]
    assert [os.path.basename(r["video"]) for r in rows] == ["a.mkv", "bad.mp4", "short.mkv", "b.mkv"]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["scored"], summary["failed"], summary["new_rows"]) == (2, 2, 4)
    assert summary["desync_mean"] == pytest.approx(np.mean([rows[0]["desync_sec"], rows[3]["desync_sec"]]))
    assert "DeSync" in capsys.readouterr().out

    # a run killed while writing its third row: resuming keeps the two rows (not scored again) and ends
    # with the same file as the uninterrupted run
    lines = full.splitlines(keepends=True)
    marked = lines[0].replace('"desync_sec": ', '"desync_sec": 9.5, "x": ', 1)
    out.write_text(marked + lines[1] + lines[2][:40])
    assert cli(data, data / "clips", "-o", out) == 0
    assert out.read_text().splitlines(keepends=True)[1:] == lines[1:]
    assert json.loads(out.read_text().splitlines()[0])["desync_sec"] == 9.5  # kept, not recomputed

    before = out.read_text()
    assert cli(data, data / "clips", "-o", out, "--no-resume") == 2  # never replaced without --overwrite
    assert out.read_text() == before
    # rows of another audio timing are not mixed into one DeSync: refused in one line, the file untouched
    capsys.readouterr()
    assert cli(data, data / "clips" / "sub", "-o", out, "--timing", "authors") == 2
    assert out.read_text() == before
    assert "holds rows scored with --timing true, not --timing authors as this run" in capsys.readouterr().err
    assert cli(data, data / "clips", "-o", out, "--overwrite") == 0
    assert out.read_text() == full

    csv_out = tmp_path / "out.csv"
    assert cli(data, data / "clips", "-o", csv_out) == 0
    with open(csv_out, newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(columns("desync"))
    for r, j in zip(table, rows):
        assert {k: v for k, v in r.items()} == {k: "" if v is None else str(v).lower() if isinstance(v, bool)
                                                else str(v) for k, v in j.items()}  # CSV booleans: true / false
    assert cli(data, data / "clips", "-o", csv_out, "--metric", "offset") == 2  # other columns: refused


def test_cli_csv_input_with_audio_and_offset_metric(data, model, tmp_path):
    write_wav(tmp_path / "gen.wav", np.zeros(6 * SR, np.float32))
    (tmp_path / "list.csv").write_text(f"path,audio_path,id\n{data / 'clips' / 'a.mkv'},gen.wav,clip-a\n"
                                       f"{data / 'clips' / 'a.mkv'},,clip-a-own\n")
    out = tmp_path / "out.jsonl"
    assert cli(data, tmp_path / "list.csv", "-o", out, "--metric", "offset", "--hop", "0.64") == 0
    gen, own = [json.loads(line) for line in out.read_text().splitlines()]
    assert (gen["id"], gen["audio"], own["audio"]) == ("clip-a", str(tmp_path / "gen.wav"), None)
    assert gen["status"] == own["status"] == "ok" and own["n_windows"] == 3  # k0 = 0, 2 (hop 0.64 s), 3 (flush with the end)
    assert own["abs_offset_sec"] == abs(own["offset_sec"]) and 0 < own["confidence"] <= 1


def test_cli_unusable_arguments(data, tmp_path):
    (tmp_path / "empty").mkdir()
    assert cli(data, tmp_path / "empty", "-o", tmp_path / "o.jsonl") == 2  # no inputs found
    assert cli(data, data / "clips", "-o", tmp_path / "o.txt") == 2
    assert cli(data, data / "clips", "-o", tmp_path / "no" / "o.jsonl") == 2
    (tmp_path / "in.csv").write_text(f"path\n{data / 'clips' / 'a.mkv'}\n")
    assert cli(data, tmp_path / "in.csv", "-o", tmp_path / "in.csv") == 2  # never writes over an input
    assert not (tmp_path / "o.jsonl").exists()


def test_parts_of_a_killed_torchrun_run_are_folded_in(data, tmp_path):
    out = tmp_path / "out.jsonl"
    assert cli(data, data / "clips", "-o", out) == 0
    full = out.read_text().splitlines(keepends=True)
    out.unlink()
    (tmp_path / "out.jsonl.rank0.part").write_text(full[2] + full[0][:30])  # killed mid-row
    (tmp_path / "out.jsonl.rank1.part").write_text(full[1])
    assert cli(data, data / "clips", "-o", out) == 0
    assert out.read_text().splitlines(keepends=True) == [full[1], full[2], full[0], full[3]]
    assert not list(tmp_path.glob("*.part"))


def test_torchrun_matches_one_process(data, tmp_path):
    single = tmp_path / "single.jsonl"
    assert cli(data, data / "clips", "-o", single) == 0
    full = single.read_text().splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    out.write_text(full[0])  # a row from an earlier run: kept, first, not recomputed
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "synchformer", "score", str(data / "clips"), "--weights", str(data / "tiny.safetensors"),
           "-o", str(out), "--workers", "0", "--no-progress", "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:  # hung: take the ranks down with the launcher
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    assert "4 rows (3 new): 2 clips scored, 2 failed" in stdout and stdout.count("DeSync") == 1  # rank 0 only
    got = [json.loads(line) for line in out.read_text().splitlines()]
    want = [json.loads(line) for line in full]
    assert [(r["video"], r["status"]) for r in got] == [(r["video"], r["status"]) for r in want]
    for g, w in zip(got, want):
        assert_same_row(g, w)
    assert not list(tmp_path.glob("*.part"))


@needs_shared
def test_shared_media(model):
    pen = MEDIA / "pen_hits_coin__node-opencv_motion.mov"  # 8.04 s: 24 segments, av-benchmark's 8 s layout
    lego = MEDIA / "lego_robot__techslides_small.webm"  # 5.57 s, VP8/Vorbis
    rows = list(score_files(model, [pen, lego], duration=8.0))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert (rows[0]["n_segments"], rows[0]["first_start_sec"], rows[0]["last_start_sec"]) == (24, 0.0, 3.2)
    assert rows[1]["n_segments"] == 16
    expected, _ = by_hand(model, pen)
    assert rows[0]["desync_sec"] == pytest.approx(expected)


@needs_shared
def test_every_shared_clip_is_handled(model):
    """Every container, codec, rate and layout in ../shared/media: a score or a one-line reason."""
    clips = sorted(p for p in MEDIA.iterdir() if p.suffix in (".mp4", ".mov", ".avi", ".webm", ".ogv"))
    rows = list(score_files(model, clips, metric="offset", hop_sec=2.56))
    by_name = {Path(r["video"]).name: r for r in rows}
    assert len(rows) == len(clips) == 9
    short = by_name.pop("talking_head__kphotoalbum_movie.avi")  # 4.5 s: less than one window
    assert short["status"] == "error" and "too short" in short["error"] and "\n" not in short["error"]
    # no offset can be read where the sound is digital silence or the picture never moves: said, not guessed
    silent = by_name.pop("cockatoo_SILENT_AUDIO__imageio.mp4")
    still = by_name.pop("speaker_hello_screencast__forensics-samples_movie-hello.mp4")
    for r, why in ((silent, "audio is digital silence"), (still, "picture is static")):
        assert r["status"] == "ok" and r["offset_sec"] is None and r["reliable"] is False and r["reasons"] == why
    assert all(r["status"] == "ok" and r["offset_sec"] is not None for r in by_name.values()), by_name


def test_resume_after_kill_9_at_random_moments_gives_the_uninterrupted_rows(tmp_path):
    """Several SIGKILLs of a real `score` process, then the same command again: every row once, same numbers."""
    import random
    import signal
    import subprocess
    import sys
    import time

    from synchformer.model.bundled import SYNTHETIC_TINY as WEIGHTS  # the bundled tiny model: cheap enough for a real process

    clips = tmp_path / "clips"
    clips.mkdir()
    for k in range(8):
        write_clip(clips / f"c{k}.mkv", 6, seed=10 + k)
    (clips / "bad.mp4").write_bytes(b"not a video" * 100)  # an error row is a row too

    def command(out):
        return [sys.executable, "-m", "synchformer", "score", str(clips), "-o", str(out), "--weights", str(WEIGHTS),
                "--workers", "1", "--no-progress", "--device", "cpu"]

    (tmp_path / "tmp").mkdir()  # a SIGKILL leaves multiprocessing's /tmp/pymp-* behind: not in the real /tmp
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path / "tmp")}
    whole = tmp_path / "whole.jsonl"
    subprocess.run(command(whole), check=True, capture_output=True, env=env, timeout=600)
    want = sorted(whole.read_text().splitlines())
    assert len(want) == 9

    out, rng, kills = tmp_path / "killed.jsonl", random.Random(7), 0
    for _ in range(4):
        proc = subprocess.Popen(command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(1.5, 6.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2
    subprocess.run(command(out), check=True, capture_output=True, env=env, timeout=600)
    got = out.read_text().splitlines()
    assert len(got) == len(set(got)) == 9  # none lost, none doubled
    assert sorted(got) == want  # the same numbers


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_stopped_by_a_signal_leaves_nothing_behind_and_resumes(tmp_path, sig):
    """SIGTERM (a scheduler, `timeout`), Ctrl-C or SIGHUP while workers decode, and once while they start:
    one line, exit code 128 + signal, no traceback, no /tmp/pymp-* folder or semaphore left; then resume."""
    import time

    from synchformer.model.bundled import SYNTHETIC_TINY as WEIGHTS

    clips = tmp_path / "clips"
    clips.mkdir()
    for k in range(10):  # enough that the first row comes well before the last
        write_clip(clips / f"c{k}.mkv", 6, seed=30 + k)
    out, tmp = tmp_path / "rows.jsonl", tmp_path / "tmp"
    tmp.mkdir()
    command = [sys.executable, "-m", "synchformer", "score", str(clips), "-o", str(out), "--weights", str(WEIGHTS),
               "--workers", "2", "--no-progress", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp)}
    code = 130 if sig == signal.SIGINT else 128 + sig
    for when in ("first row", "start"):
        # default dispositions in the child, whatever this run inherited (under nohup SIGHUP is ignored, and the
        # CLI rightly leaves an ignored signal ignored)
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True,
                                preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
        deadline = time.time() + 300
        if when == "first row":
            while proc.poll() is None and time.time() < deadline and not (out.exists() and out.read_text().strip()):
                time.sleep(0.05)
        else:  # the pool is being started once the process has a pymp folder (the fork server's socket)
            while proc.poll() is None and time.time() < deadline and not list(tmp.glob("pymp-*")):
                time.sleep(0.01)
        assert proc.poll() is None, f"score ended before the signal ({when}): {proc.stderr.read()}"
        proc.send_signal(sig)
        err = proc.communicate(timeout=120)[1]
        assert proc.returncode == code, err
        assert "Traceback" not in err and "leaked" not in err, err
        assert err.strip().splitlines()[-1] in ("synchformer: interrupted", f"synchformer: stopped by {sig.name}")
        assert [p.name for p in tmp.iterdir() if p.name.startswith("pymp-")] == []
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(f"c{k}" for k in range(10))
    assert all(r["status"] == "ok" for r in rows)
