"""What `synchformer score` writes, and what it refuses to write (issue 36): rows and the summary name the model
and the settings that made them, a resume with others is refused; one run per output at a time (a killed run
leaves no lock); ids unique and stable; outputs that cannot be written refused before the model loads, a disk
that fills up mid-run leaves complete rows."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import synchformer.cli.score as score_cli
from synchformer.cli import main
from synchformer.errors import SynchformerError
from synchformer.features.segments import decode_size
from synchformer.inference.batch_io import columns, read_inputs
from synchformer.model import ModelConfig, Synchformer, save_model
from test_score import one_thread, write_clip  # noqa: F401  (one_thread: an autouse fixture, used so)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """clips/: a good 6 s clip and a file that is not a video; two tiny models of other weights, a fine one."""
    root = tmp_path_factory.mktemp("outputs")
    (root / "clips").mkdir()
    write_clip(root / "clips" / "a.mkv", 6, seed=1)
    (root / "clips" / "bad.mp4").write_bytes(b"not a video" * 100)
    for name, seed, kw in (("tiny", 0, {}), ("other", 1, {}), ("fine", 2, {"max_offset_sec": 0.2})):
        torch.manual_seed(seed)
        save_model(Synchformer(ModelConfig.tiny(**kw)).eval(), root / f"{name}.safetensors")
    return root


def cli(data, *args, weights="tiny") -> int:
    return main(["score", *map(str, args), "--weights", str(data / f"{weights}.safetensors"), "--workers", "0",
                 "--no-progress", "--device", "cpu"])


def sha16(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()[:16]


def rows_of(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def error_line(err: str) -> str:
    """The one error line that ends a run (after the lines that name the files it skipped)."""
    errors = [line for line in err.splitlines() if line.startswith("synchformer: error:")]
    assert "Traceback" not in err and len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    return errors[0]


@pytest.fixture
def no_model(monkeypatch):
    """Make loading a model fail the test: what is refused must be refused before that (seconds) is spent."""
    def load(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(score_cli, "load", load)


def test_rows_and_summary_name_the_model_and_settings_and_a_resume_with_others_is_refused(data, tmp_path, capsys,
                                                                                        monkeypatch):
    out, summary = tmp_path / "w.jsonl", tmp_path / "s.json"
    assert cli(data, data / "clips", "-o", out, "--summary-json", summary) == 0
    ok, bad = rows_of(out)
    tiny = str(data / "tiny.safetensors")
    want = {"weights": tiny, "weights_sha256": sha16(tiny), "precision": "fp32", "timing": "true",
            "frame_size": ModelConfig.tiny().image_size, "cut_sec": None, "audio_track": None}
    for row in (ok, bad):  # an error row too: it was made by this run
        assert list(row) == list(columns("desync"))
        assert {k: row[k] for k in want} == want
    assert (ok["status"], bad["status"]) == ("ok", "error")
    assert {k: json.loads(summary.read_text())[k] for k in want} == want
    before, stamp = out.read_bytes(), out.stat().st_mtime_ns
    capsys.readouterr()

    # the case: another model's rows averaged into one DeSync. Refused once the model is known; untouched
    assert cli(data, data / "clips" / "a.mkv", tmp_path / "fixed.mkv", "-o", out, weights="other") == 2
    other = str(data / "other.safetensors")
    assert (f"holds rows scored with --weights {tiny} (sha256 {sha16(tiny)}), not --weights {other} "
            f"(sha256 {sha16(other)}) as this run" in one_line(capsys.readouterr().err))
    assert (out.read_bytes(), out.stat().st_mtime_ns) == (before, stamp)

    # what the options tell is checked before the model loads
    with monkeypatch.context() as m:
        m.setattr(score_cli, "load", lambda *a, **k: pytest.fail("the model was loaded"))
        assert cli(data, data / "clips", "-o", out, "--duration", "5") == 2
        assert "holds rows scored with no --duration, not --duration 5.0 as this run" in one_line(
            capsys.readouterr().err)
        assert cli(data, data / "clips", "-o", out, "--timing", "authors", "--audio-track", "1") == 2
        assert ("holds rows scored with --timing true, the default audio track, not --timing authors, "
                "--audio-track 1 as this run") in one_line(capsys.readouterr().err)
        csv_out = tmp_path / "w.csv"  # another metric's CSV: refused in one line, before the model loads
        csv_out.write_text(",".join(columns("desync")) + "\n")
        assert cli(data, data / "clips", "-o", csv_out, "--metric", "offset") == 2
        assert "holds rows of --metric desync, not offset" in one_line(capsys.readouterr().err)
    assert (out.read_bytes(), out.stat().st_mtime_ns) == (before, stamp)

    assert cli(data, data / "clips", "-o", out, "--overwrite", weights="other") == 0
    assert {r["weights_sha256"] for r in rows_of(out)} == {sha16(other)}

    # a CSV holds the same fields as text: read back, they compare alike
    table = tmp_path / "t.csv"
    assert cli(data, data / "clips", "-o", table) == 0
    capsys.readouterr()
    assert cli(data, data / "clips", "-o", table) == 0 and "2 rows (0 new)" in capsys.readouterr().out
    before = table.read_bytes()
    assert cli(data, data / "clips", "-o", table, weights="other") == 2
    assert f"holds rows scored with --weights {tiny} (sha256 {sha16(tiny)})" in one_line(capsys.readouterr().err)
    assert table.read_bytes() == before


def test_offset_rows_name_hop_budget_and_fine_model(data, tmp_path, capsys, monkeypatch):
    out, fine = tmp_path / "o.jsonl", str(data / "fine.safetensors")
    video = data / "clips" / "a.mkv"
    assert cli(data, video, "-o", out, "--metric", "offset", "--hop", "0.64", "--fine-weights", fine) == 0
    (row,) = rows_of(out)
    assert list(row) == list(columns("offset")) and row["status"] == "ok"
    assert (row["hop_sec"], row["max_windows"], row["fine_weights"], row["fine_sha256"]) == (0.64, 32, fine,
                                                                                              sha16(fine))
    assert row["frame_size"] == decode_size(ModelConfig.tiny().image_size)  # the reference's 256/224 of the input
    before = out.read_bytes()
    capsys.readouterr()
    assert cli(data, video, tmp_path / "b.mkv", "-o", out, "--metric", "offset", "--hop", "0.64") == 2
    assert (f"holds rows scored with --fine-weights {fine} (sha256 {sha16(fine)}), not --fine-weights none as "
            "this run") in one_line(capsys.readouterr().err)
    with monkeypatch.context() as m:
        m.setattr(score_cli, "load", lambda *a, **k: pytest.fail("the model was loaded"))
        assert cli(data, video, "-o", out, "--metric", "offset", "--hop", "1.28", "--max-windows", "8") == 2
        assert "holds rows scored with --hop 0.64, --max-windows 32, not --hop 1.28, --max-windows 8 as this run" in \
            one_line(capsys.readouterr().err)
    assert out.read_bytes() == before


# the desync rows of versions before the rows named their model and settings
OLD_COLUMNS = ("id", "video", "audio", "status", "error", "metric", "timing", "duration_sec", "n_segments",
               "n_windows", "warnings", "reliable", "reasons", "desync_sec", "first_start_sec", "first_offset_sec",
               "first_probability", "last_start_sec", "last_offset_sec", "last_probability")


def test_rows_of_an_older_version_are_refused_with_a_way_on(data, tmp_path, capsys, no_model):
    old = dict.fromkeys(OLD_COLUMNS)
    old.update(id="a", video=str(data / "clips" / "a.mkv"), status="ok", metric="desync", timing="true",
               desync_sec=0.4)
    jsonl, csv_out = tmp_path / "old.jsonl", tmp_path / "old.csv"
    jsonl.write_text(json.dumps(old) + "\n")
    csv_out.write_text(",".join(OLD_COLUMNS) + "\n" + ",".join(
        "" if v is None else str(v) for v in old.values()) + "\n")
    for path in (jsonl, csv_out):
        before = path.read_bytes()
        assert cli(data, data / "clips", "-o", path) == 2
        line = one_line(capsys.readouterr().err)
        assert f"{path}: was written by an older synchformer" in line and "--overwrite" in line and "new -o" in line
        assert path.read_bytes() == before


def test_ids_are_unique_within_a_run_and_stable_across_resumes(data, tmp_path, capsys):
    clips = tmp_path / "v"
    (clips / "sub").mkdir(parents=True)
    (clips / "other").mkdir()
    for name in ("lego_robot.mp4", "lego_robot.ogv", "lego_robot.webm", "sub/x.mp4", "other/x.mp4", "y.mkv"):
        (clips / name).write_bytes(b"not a video" * 100)  # error rows: cheap, and rows all the same
    ids = {os.path.relpath(it.video, clips): it.id for it in read_inputs([clips])}
    assert ids == {"lego_robot.mp4": "lego_robot.mp4", "lego_robot.ogv": "lego_robot.ogv",
                   "lego_robot.webm": "lego_robot.webm", "other/x.mp4": "other/x.mp4", "sub/x.mp4": "sub/x.mp4",
                   "y.mkv": "y"}

    out = tmp_path / "rows.jsonl"
    assert cli(data, clips / "lego_robot.webm", "-o", out) == 0
    assert [r["id"] for r in rows_of(out)] == ["lego_robot"]
    # the row already written keeps its id; the inputs that share its stem get others
    assert cli(data, clips, "-o", out) == 0
    first = {os.path.relpath(r["video"], clips): r["id"] for r in rows_of(out)}
    assert first["lego_robot.webm"] == "lego_robot" and len(set(first.values())) == len(first) == 6
    assert cli(data, clips, "-o", out, "--retry-errors") == 0  # every row scored again: the same ids
    assert {os.path.relpath(r["video"], clips): r["id"] for r in rows_of(out)} == first

    # an id given in a CSV wins; two inputs given the same one are refused in one line naming both
    (tmp_path / "ids.csv").write_text("path,id\nv/y.mkv,lego_robot\nv/lego_robot.mp4,\n")
    assert [it.id for it in read_inputs([tmp_path / "ids.csv"])] == ["lego_robot", "lego_robot.mp4"]
    (tmp_path / "twice.csv").write_text("path,id\nv/y.mkv,clip\nv/sub/x.mp4,clip\n")
    capsys.readouterr()
    assert cli(data, tmp_path / "twice.csv", "-o", tmp_path / "t.jsonl") == 2
    line = one_line(capsys.readouterr().err)
    assert "same id 'clip'" in line and str(clips / "y.mkv") in line and str(clips / "sub" / "x.mp4") in line
    (tmp_path / "one.csv").write_text("path,id\nv/y.mkv,clip\n")
    (tmp_path / "two.csv").write_text("path,id\nv/sub/x.mp4,clip\n")
    with pytest.raises(SynchformerError, match="two inputs are given the id 'clip'"):
        read_inputs([tmp_path / "one.csv", tmp_path / "two.csv"])


# ------------------------------------------------------------------------------ concurrent and killed runs

@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """Six clips and a non-video, scored by real `score` processes with the bundled tiny model."""
    root = tmp_path_factory.mktemp("many")
    for k in range(6):
        write_clip(root / f"c{k}.mkv", 6, seed=40 + k)
    (root / "bad.mp4").write_bytes(b"not a video" * 100)
    (root / "tmp").mkdir()  # a killed run leaves multiprocessing's pymp-* folder: not in the real /tmp
    return root


def command(clips, out, *extra):
    from synchformer.model.bundled import SYNTHETIC_TINY as WEIGHTS

    return [sys.executable, "-m", "synchformer", "score", str(clips), "-o", str(out), "--weights", str(WEIGHTS),
            "--workers", "0", "--no-progress", "--device", "cpu", *extra]


def env(clips) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(clips / "tmp")}


def start(clips, out, *extra):
    return subprocess.Popen(command(clips, out, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(clips))


def one_row_per_input(out, clips) -> list[dict]:
    rows = rows_of(out)
    videos = sorted(str(p) for p in clips.iterdir() if p.is_file())
    assert sorted(r["video"] for r in rows) == videos  # every input once: none lost, none doubled
    assert len({r["id"] for r in rows}) == len(rows)
    return rows


def test_a_second_run_on_the_same_output_is_refused_and_a_killed_run_leaves_no_lock(many, tmp_path):
    out = tmp_path / "shared.jsonl"
    first = start(many, out)
    try:
        deadline = time.time() + 120
        while first.poll() is None and time.time() < deadline and not (out.exists() and out.read_text().strip()):
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()[1]
        first.send_signal(signal.SIGSTOP)  # mid-run, held there: the second run certainly meets it
        before = out.read_bytes()
        # the case: a --retry-errors run rewrote the file under the first one, which then lost its rows
        second = subprocess.run(command(many, out, "--retry-errors"), capture_output=True, text=True, timeout=120,
                                env=env(many))
        assert second.returncode == 2
        assert (f"{out}: is being written by another `synchformer score` run (pid {first.pid} on"
                in one_line(second.stderr))
        assert out.read_bytes() == before
        first.send_signal(signal.SIGKILL)  # killed mid-run, holding the lock
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    third = subprocess.run(command(many, out), capture_output=True, text=True, timeout=300, env=env(many))
    assert third.returncode == 0, third.stderr
    assert "(7 new)" not in third.stdout and "7 rows" in third.stdout  # it went on from the killed run's rows
    rows = one_row_per_input(out, many)
    assert sum(r["status"] == "ok" for r in rows) == 6
    assert not (tmp_path / "shared.jsonl.lock").exists()


def test_two_runs_started_together_leave_one_row_per_input(many, tmp_path):
    out = tmp_path / "shared.jsonl"
    runs = [start(many, out), start(many, out)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in runs]
    # one of them is refused (or, if one finished before the other began, the other found nothing to do)
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 2], [0, 0]), results
    for code, err in results:
        if code == 2:
            assert "is being written by another `synchformer score` run" in one_line(err)
    one_row_per_input(out, many)


# ----------------------------------------------------------------------------------- outputs that cannot be

def test_a_disk_that_fills_up_mid_run_leaves_complete_rows_and_one_line(data, tmp_path, capsys, monkeypatch):
    whole = tmp_path / "whole.jsonl"
    inputs = [data / "clips" / "a.mkv", data / "clips" / "bad.mp4", data / "clips" / "a.mkv", tmp_path / "gone.mkv"]
    (tmp_path / "list.csv").write_text("path,audio\n" + "".join(f"{p},\n" for p in inputs[:2])
                                       + f"{inputs[0]},{data / 'clips' / 'x.wav'}\n{inputs[3]},\n")
    assert cli(data, tmp_path / "list.csv", "-o", whole) == 0
    want = whole.read_text().splitlines(keepends=True)
    assert len(want) == 4

    # a real process whose files may not grow past two and a half rows: the system refuses the write (EFBIG,
    # as a full disk does with ENOSPC) with half of the third row written; that half goes, one line, exit 2
    limit = len("".join(want[:2]).encode()) + len(want[2].encode()) // 2
    real_out = tmp_path / "limited.jsonl"

    def small_files():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    cmd = ["score", str(tmp_path / "list.csv"), "-o", str(real_out), "--weights", str(data / "tiny.safetensors"),
           "--workers", "0", "--no-progress", "--device", "cpu"]
    done = subprocess.run([sys.executable, "-m", "synchformer", *cmd], capture_output=True, text=True, timeout=300,
                          preexec_fn=small_files, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2
    assert f"{real_out}: cannot write: {os.strerror(errno.EFBIG)}" in error_line(done.stderr)
    assert real_out.read_text().splitlines(keepends=True) == want[:2]
    assert cli(data, tmp_path / "list.csv", "-o", real_out) == 0
    assert real_out.read_text().splitlines(keepends=True) == want

    # the same with ENOSPC itself
    out, real = tmp_path / "full.jsonl", score_cli._write_all
    written = []

    def filling(fd, data_):
        if len(written) == 2:
            real(fd, data_[:len(data_) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(data_)
        real(fd, data_)

    with monkeypatch.context() as m:
        m.setattr(score_cli, "_write_all", filling)
        capsys.readouterr()
        assert cli(data, tmp_path / "list.csv", "-o", out) == 2
    line = error_line(capsys.readouterr().err)
    assert f"{out}: cannot write: {os.strerror(errno.ENOSPC)}" in line and "run the same command again" in line
    assert out.read_text().splitlines(keepends=True) == want[:2]
    assert not (tmp_path / "full.jsonl.lock").exists()
    assert cli(data, tmp_path / "list.csv", "-o", out) == 0  # once there is room: goes on, the same rows
    assert out.read_text().splitlines(keepends=True) == want


def _mount_tmpfs(folder, options: str) -> bool:
    """A small tmpfs on ``folder`` (root only, and only where mounting is allowed)."""
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                                capture_output=True).returncode == 0


def test_outputs_that_cannot_be_written_are_refused_before_the_model_loads(data, tmp_path, capsys, no_model):
    """-o and --summary-json in a read-only folder (file system) or on a full one: one line, exit 2, before the
    model loads (the issue: an OSError traceback once it had)."""
    ro, full = tmp_path / "ro", tmp_path / "full"
    ro.mkdir()
    full.mkdir()
    mounted = []
    try:
        if os.geteuid() != 0:
            ro.chmod(0o555)
        elif _mount_tmpfs(ro, "ro,size=64k"):
            mounted.append(ro)
        else:
            pytest.skip("root, and no read-only file system to write to (mount refused)")
        cases = [(ro / "rows.jsonl", ro / "rows.jsonl"), (tmp_path / "rows.jsonl", ro / "s.json")]
        if _mount_tmpfs(full, "size=16k"):
            mounted.append(full)
            with pytest.raises(OSError), open(full / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            cases += [(full / "rows.jsonl", full / "rows.jsonl"), (tmp_path / "rows.jsonl", full / "s.json")]
        for out, named in cases:
            extra = ["--summary-json", named] if named != out else []
            assert cli(data, data / "clips", "-o", out, *extra) == 2
            line = one_line(capsys.readouterr().err)
            assert line.startswith(f"synchformer: error: {named}: cannot write"), line
            assert not out.exists() and not named.exists()
        if os.geteuid() != 0:  # root may write a read-only file anyway
            locked = tmp_path / "mine.jsonl"
            locked.write_text("")
            locked.chmod(0o444)
            assert cli(data, data / "clips", "-o", locked) == 2
            assert f"{locked}: cannot write: the file is read-only" in one_line(capsys.readouterr().err)
    finally:
        for m in mounted:
            subprocess.run(["umount", str(m)], check=True)
        ro.chmod(0o755)
