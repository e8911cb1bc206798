"""`synchformer monitor`: a live MPEG-TS stream over UDP on 127.0.0.1 (and a growing file) whose sound goes 0.6 s
early at 30 s is watched with the bundled models: in-sync readings first, an alert within 20 s of stream after the
change and none before, the input reported lost when the sender stops, a summary on SIGTERM; the metrics endpoint
scraped during the run; a slow model keeps up by skipping windows; bad inputs are refused before any model loads."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from live_media import GrowingFile, Sender, make_shifting_ts
from synchformer.cli import main

REPO = Path(__file__).resolve().parents[1]
SHIFT_AT, SHIFT = 30.0, 0.6
SPEED = 2.5  # the sender plays the stream at 2.5x real time: the bundled models keep up on 2 cores (every window,
# when nothing else runs), and a 60 s stream takes 24 s
DURATION = 60.0  # 30 s in sync, then 30 s with the sound early: room for the default 5 readings after the change


def _free_port(kind=socket.SOCK_DGRAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    d = tmp_path_factory.mktemp("live")
    return {ch: make_shifting_ts(d / f"shift{ch}.ts", duration=DURATION, shift_at_sec=SHIFT_AT, shift_sec=SHIFT,
                                 channels=ch) for ch in (1, 2)}


def _first_pts(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            return float(frame.time)


class _Run:
    """`synchformer monitor ... --json` in a process of its own; its events read as they come."""

    def __init__(self, args: list[str]):
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.p = subprocess.Popen([sys.executable, "-m", "synchformer", "monitor", *args, "--json",
                                   "-w", "bundled"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env, cwd=REPO)
        self.events: list[dict] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.p.stdout:
            self.events.append(json.loads(line))

    def wait_for(self, test, timeout: float) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for e in list(self.events):
                if test(e):
                    return e
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        self.p.kill()
        raise AssertionError(f"not seen in {timeout} s; stderr: {self.p.stderr.read()[-2000:]}; events: "
                             f"{self.events[-5:]}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.p.poll() is None:  # a failed check: the monitor is not left running
            self.p.kill()
            self.p.wait(30)

    def terminate(self) -> tuple[int, str]:
        self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(30)
        self.reader.join(10)
        return rc, self.p.stderr.read()


def _check_stream(events: list[dict], ts: Path) -> None:
    """In-sync readings first, an alert (sound early) within 20 s of stream after the change and none before it,
    the input lost at the end, then the summary."""
    timeline = next(e for e in events if e["event"] == "timeline")
    # the stream's time 0 is its first picture received: the file's time of a media_time_sec
    at = float(timeline["origin_sec"]) - _first_pts(ts)
    windows = [e for e in events if e["event"] == "window"]
    alerts = [e for e in events if e["event"] == "alert"]
    before = [w for w in windows if w["media_time_sec"] + at <= SHIFT_AT and w["reliable"]]
    assert len(before) >= 4, windows
    assert np.median([w["refined_offset_sec"] for w in before]) == pytest.approx(0.0, abs=0.1)
    assert sum(w["in_tolerance"] for w in before) > len(before) / 2
    assert alerts, windows
    first = alerts[0]
    assert first["media_time_sec"] + at > SHIFT_AT, (first, at)  # no alert before the change
    assert first["media_time_sec"] + at - SHIFT_AT <= 20.0, (first, at)
    assert first["side"] == "lead" and first["offset_sec"] == pytest.approx(SHIFT, abs=0.15)
    assert first["tolerance"] == {"name": "bt1359", "lead_ms": 45, "lag_ms": 125}
    lost = [i for i, e in enumerate(events) if e["event"] == "input_lost"]
    assert lost and lost[-1] > events.index(windows[-1]), "the input's loss is reported after the last window"
    summary = events[-1]
    assert summary["event"] == "summary" and summary["windows_analysed"] == len(windows)
    assert summary["alerts"] >= 1 and summary["inputs_lost"] >= 1
    for w in windows:  # every window event carries what the issue asks for
        assert {"media_time_sec", "offset_sec", "refined_offset_sec", "reliable", "in_tolerance", "wall_time",
                "confidence", "median_offset_sec", "lag_sec"} <= set(w)


@pytest.mark.slow
@pytest.mark.parametrize("channels", [1, 2], ids=["mono", "stereo"])
def test_monitor_udp_stream_alerts_after_the_sound_goes_early(streams, channels):
    port = _free_port()
    metrics = _free_port(socket.SOCK_STREAM) if channels == 1 else None
    with _Run([f"udp://127.0.0.1:{port}", "--timeout", "2"]
              + (["--metrics-port", str(metrics)] if metrics else [])) as run:
        run.wait_for(lambda e: e["event"] == "start", 120)
        sender = Sender(streams[channels], port, speed=SPEED, start_after=0.5)
        sender.start()
        if metrics:  # scraped while the stream runs: our metrics only
            run.wait_for(lambda e: e["event"] == "window", 60)
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10).read().decode()
            names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
            assert names and all(n.startswith("synchformer_") for n in names), names
            analysed = sum(float(line.split()[-1]) for line in text.splitlines()
                           if line.startswith("synchformer_windows_analysed_total"))
            assert analysed >= 1
            assert "synchformer_input_up 1.0" in text
        sender.join(60)
        assert sender.done
        run.wait_for(lambda e: e["event"] == "input_lost" and e["media_time_sec"] and e["media_time_sec"] > 55, 60)
        if metrics:
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10).read().decode()
            assert 'synchformer_alert{side="lead"} 1.0' in text and "synchformer_alerts_total 1.0" in text
            assert "synchformer_input_up 0.0" in text
        rc, err = run.terminate()
        assert rc == 128 + signal.SIGTERM and "stopped by SIGTERM" in err
    _check_stream(run.events, streams[channels])


@pytest.mark.slow
def test_monitor_follows_a_growing_file(streams, tmp_path):
    growing = tmp_path / "recording.ts"
    writer = GrowingFile(streams[2], growing, speed=SPEED)
    with _Run([str(growing), "--follow", "--timeout", "2"]) as run:
        run.wait_for(lambda e: e["event"] == "start", 120)
        writer.start()
        writer.join(60)
        assert writer.done
        run.wait_for(lambda e: e["event"] == "input_lost", 60)
        rc, _ = run.terminate()
    assert rc == 128 + signal.SIGTERM
    assert [e["reason"] for e in run.events if e["event"] == "input_lost"] == ["the file has not grown for 2 s"]
    _check_stream(run.events, streams[2])


def test_a_finished_file_is_read_through_in_text(streams, capsys):
    assert main(["monitor", str(streams[1]), "-w", "bundled", "--tolerance", "ebu-r37"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("monitoring ") and "-60..+40 ms" in out[0] and "every window" in out[0]
    windows = [line for line in out if " s  offset " in line]
    assert len(windows) == 29  # (60 s - 4.8 s) / 1.92 s + 1
    assert any(line.split()[1:3] == ["ALERT", "at"] for line in out), out
    assert all(line.split()[1] != "ALERT" or float(line.split()[3].rstrip("s:").strip()) > SHIFT_AT for line in out)
    assert out[-1].startswith("summary: 29 windows analysed (0 skipped to keep up)")


def _slowed_run(models, streams):
    import synchformer.inference.monitor as mon

    port = _free_port()
    m = mon.Monitor(f"udp://127.0.0.1:{port}", models, timeout_sec=1.5, max_lag_sec=2.0)
    sender = Sender(streams[1], port, speed=3.0, start_after=0.3)
    events = []
    for e in m.events():
        events.append(e)
        if e.event == "start":
            sender.start()
        if e.event == "input_lost" and sender.done or len(events) > 200:
            break
    m.stop()
    return m, events, [e for e in events if e.event == "window"]


def test_a_slow_model_reads_the_newest_window_and_says_it_lags(streams, monkeypatch):
    """Encoding slowed to far below real time (1 s a call of 4 segments, 2 to 4 s a window): the monitor skips windows (one in
    k, said on each reading), its readings stay near the live edge, and a lag over --max-lag is a lagging event."""
    import synchformer
    import synchformer.inference.monitor as mon

    real = mon.encode_chunk

    def slow(*a, **kw):
        time.sleep(1.0)
        return real(*a, **kw)

    monkeypatch.setattr(mon, "encode_chunk", slow)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the command line runs it on 2 cores (the decoding thread keeps one)
    try:
        m, events, windows = _slowed_run(synchformer.load_models("bundled"), streams)
    finally:
        torch.set_num_threads(threads)
    assert len(windows) >= 3
    assert sum(w.skipped for w in windows) > 0 and min(w.analysed_fraction for w in windows) < 1
    # at the live edge when the stream ends, not working through a backlog (every window would take it past 60 s
    # of wall time, for 20 s of stream)
    assert windows[-1].media_time_sec > DURATION - 15, windows[-1]
    assert max(w.lag_sec for w in windows) < DURATION / 2
    assert any(e.event == "lagging" and e.lag_sec > 2.0 for e in events)
    s = m.summary()
    assert s.windows_skipped == sum(w.skipped for w in windows) and s.windows_analysed == len(windows)


def test_a_restarted_stream_starts_a_new_timeline(streams, tmp_path):
    """Two streams back to back in one file (the timestamps jump back at the join): two timelines, each from 0."""
    from synchformer.io.live import LiveReader

    joined = tmp_path / "joined.ts"
    joined.write_bytes(streams[1].read_bytes()[:188 * 3000] + streams[2].read_bytes())
    r = LiveReader(str(joined), size=112, crop=96, ahead_sec=1000).start()
    seen = []
    while not r.ended:
        r.wait(0.5)
        seen += r.events()
    seen += r.events()
    timelines = [e for e in seen if e.kind == "timeline"]
    assert [e.index if hasattr(e, "index") else e.timeline for e in timelines] == [1, 2]
    assert "jumped" in timelines[1].reason
    assert r.newest_sec(2) == pytest.approx(DURATION, abs=0.2)  # the second timeline counts from its own start


def test_input_lost_and_back_when_the_sender_restarts(streams):
    from synchformer.io.live import LiveReader

    port = _free_port()
    r = LiveReader(f"udp://127.0.0.1:{port}", size=112, crop=96, timeout_sec=1.0).start()
    first = Sender(streams[1], port, speed=8.0, start_after=0.3)
    first.start()
    seen = []

    def until(kind, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r.wait(0.2)
            seen.extend(r.events())
            if any(e.kind == kind for e in seen):
                return
        raise AssertionError(f"no {kind}: {seen}")

    until("timeline", 20)
    time.sleep(1.0)
    first.stop()
    until("lost", 20)
    second = Sender(streams[2], port, speed=8.0)
    second.start()
    until("back", 30)
    while r.current() != 2:
        r.wait(0.2)
        seen.extend(r.events())
    second.stop()
    r.stop()
    kinds = [e.kind for e in seen]
    assert kinds.index("lost") < kinds.index("back")
    assert [e.timeline for e in seen if e.kind == "timeline"][:2] == [1, 2]


@pytest.mark.parametrize("argv, message", [
    (["srt://127.0.0.1:9000"], "no SRT support"),
    (["/nonexistent/feed.ts"], "file not found"),
    (["udp://127.0.0.1:5000", "--follow"], "--follow is for a file"),
    (["gopher://example/x"], "protocol is not supported"),
    (["MP4", "--follow"], "MP4/MOV file cannot be read while it is being written"),
])
def test_bad_inputs_are_one_line_before_any_model_loads(argv, message, tmp_path, monkeypatch, capsys):
    import synchformer.inference.predict as predict_mod

    monkeypatch.setattr(predict_mod, "load_models", lambda *a, **k: pytest.fail("the model was loaded"))
    mp4 = tmp_path / "rec.mp4"
    mp4.write_bytes(b"\0\0\0\x18ftypisom" + b"\0" * 100)
    argv = [str(mp4) if a == "MP4" else a for a in argv]
    assert main(["monitor", *argv, "-w", "bundled"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and argv[0] in err[0], err


def test_a_taken_metrics_port_is_refused_before_any_model_loads(streams, monkeypatch, capsys):
    import synchformer.inference.predict as predict_mod

    monkeypatch.setattr(predict_mod, "load_models", lambda *a, **k: pytest.fail("the model was loaded"))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        rc = main(["monitor", str(streams[1]), "--metrics-port", str(s.getsockname()[1])])
    finally:
        s.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--metrics-port" in err[0], err


def test_alerts_need_n_reliable_readings_on_one_side_and_clear_after_n_inside():
    from synchformer.inference.monitor import AlertState
    from synchformer.inference.tolerance import Tolerance

    a = AlertState(Tolerance.parse("bt1359"), 3)  # (any N: the rule)
    assert [a.add(x) for x in (0.6, 0.6, -0.4)] == [None, None, None]  # out, but not on one side
    assert [a.add(x) for x in (0.6, 0.6)] == [None, None]
    assert a.add(0.5) == ("alert", "lead", 0.6)
    assert [a.add(x) for x in (0.0, 0.01, 0.6, 0.0, 0.0)] == [None] * 5
    assert a.add(-0.1) == ("clear", None, 0.0)
    assert a.raised == 1 and a.active is None
