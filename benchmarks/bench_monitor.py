"""Live monitoring (``synchformer monitor``): how many readings an alert needs, and what a CPU sustains.

    python benchmarks/bench_monitor.py alerts [--clean 12 --shifted 6 --seconds 60]
    python benchmarks/bench_monitor.py rate --config tiny|full [--seconds 60 --speed 1 --live-only]

``alerts``: synthetic streams (as `synchformer synth` makes them; the bundled models), written as MPEG-TS with
48 kHz sound and read through window by window (every window at the default hop): ``--clean`` streams in sync all
along, ``--shifted`` ones whose sound is 0.6 s early (half of them: late) from 30 s on. Each stream's readings are
run through the alert rule for N = 1..8 readings: per N, the false alarms (alerts on the clean streams, per hour of
stream) and on the shifted ones the alert's latency in media seconds after the change, and any alert before it.
Tolerance: BT.1359 (the default) and EBU R37.

``rate``: the sustained real-time factor. ``capacity``: a finished file read through, every window (media seconds
covered per wall second; above 1: it keeps up with every window). ``live``: the same clip sent over UDP on
127.0.0.1 at ``--speed`` times real time for ``--seconds`` and monitored as a live input: the share of the hop
grid's windows analysed, the lag of the readings, and lagging events. ``full``: the full-size model, random weights
(the speed is the same), bf16 where the CPU has bf16 units, as `--precision auto` runs it.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from live_media import Sender, make_shifting_ts  # noqa: E402

from synchformer.inference.monitor import AlertState, Monitor  # noqa: E402
from synchformer.inference.tolerance import Tolerance  # noqa: E402

SHIFT_AT = 30.0


def _readings(path: Path, models) -> list[dict]:
    m = Monitor(str(path), models, every_window=True)
    return [e.to_dict() for e in m.events() if e.event == "window"]


def _alerts(readings: list[dict], tol: Tolerance, n: int) -> list[float]:
    state = AlertState(tol, n)
    out = []
    for r in readings:
        if r["reliable"] and r["refined_offset_sec"] is not None:
            change = state.add(r["refined_offset_sec"])
            if change is not None and change[0] == "alert":
                out.append(r["media_time_sec"])
    return out


def run_alerts(clean: int, shifted: int, seconds: float, seed: int) -> dict:
    import synchformer

    models = synchformer.load_models("bundled")
    streams = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(clean + shifted):
            shift = 0.0 if i < clean else (0.6 if (i - clean) % 2 == 0 else -0.6)
            path = make_shifting_ts(Path(d) / f"s{i}.ts", duration=seconds, shift_at_sec=SHIFT_AT, shift_sec=shift,
                                    seed=seed + i)
            streams.append((shift, _readings(path, models)))
    out = {"kind": "alerts", "streams": {"clean": clean, "shifted": shifted, "seconds": seconds},
           "reliable_fraction": round(float(np.mean([r["reliable"] for _, rs in streams for r in rs])), 3)}
    for name in ("bt1359", "ebu-r37"):
        tol = Tolerance.parse(name)
        clean_out = [r for s, rs in streams if s == 0 for r in rs if r["reliable"] and not r["in_tolerance"]]
        clean_rel = [r for s, rs in streams if s == 0 for r in rs if r["reliable"]]
        rows = {}
        for n in range(1, 9):
            false = sum(len(_alerts(rs, tol, n)) for s, rs in streams if s == 0)
            lat, early, missed = [], 0, 0
            for s, rs in streams:
                if s == 0:
                    continue
                times = _alerts(rs, tol, n)
                early += sum(t <= SHIFT_AT for t in times)
                after = [t - SHIFT_AT for t in times if t > SHIFT_AT]
                if after:
                    lat.append(after[0])
                else:
                    missed += 1
            hours = clean * seconds / 3600
            rows[n] = {"false_alarms": false, "false_alarms_per_hour": round(false / hours, 1),
                       "alerts_before_change": early, "missed": missed,
                       "latency_sec_median": round(float(np.median(lat)), 2) if lat else None,
                       "latency_sec_max": round(float(np.max(lat)), 2) if lat else None}
        out[name] = {"clean_reliable_out_of_tolerance": f"{len(clean_out)}/{len(clean_rel)}", "by_n": rows}
    return out


def _free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_rate(config: str, seconds: float, speed: float, capacity: bool = True) -> dict:
    import torch

    import synchformer
    from synchformer.inference.predict import Models
    from synchformer.model.precision import resolve

    import os

    torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))  # as `synchformer monitor` runs
    if config == "full":
        from synchformer.model import Synchformer

        model = Synchformer().eval()
        model.precision = resolve("auto", model.device, model.cfg)  # bf16 where the CPU has bf16 units
        models, size = Models(offset=model, weights="random full size"), 256
    else:
        models, size = synchformer.load_models("bundled"), 96
    out = {"kind": "rate", "config": config, "precision": getattr(models.offset, "precision", "fp32"),
           "torch_threads": torch.get_num_threads(), "fine_pass": models.fine is not None, "seconds": seconds,
           "speed": speed}
    with tempfile.TemporaryDirectory() as d:
        clip = make_shifting_ts(Path(d) / "c.ts", duration=seconds, shift_at_sec=seconds, shift_sec=0.0, seed=5,
                                size=size)
        if capacity:  # every window of the finished file
            t = time.perf_counter()
            m = Monitor(str(clip), models, every_window=True)
            windows = [e for e in m.events() if e.event == "window"]
            wall = time.perf_counter() - t
            media = windows[-1].media_time_sec if windows else 0.0
            out["capacity"] = {"windows": len(windows), "media_sec": round(media, 2), "wall_sec": round(wall, 2),
                               "real_time_factor": round(media / wall, 3)}
        # live: the same clip over UDP
        port = _free_port()
        m = Monitor(f"udp://127.0.0.1:{port}", models, timeout_sec=3.0)
        sender = Sender(clip, port, speed=speed, start_after=0.5)
        sender.start()
        events, t = [], time.perf_counter()
        for e in m.events():
            events.append(e)
            if e.event == "input_lost" and sender.done:
                break
        wall = time.perf_counter() - t
        m.stop()
        ws = [e for e in events if e.event == "window"]
        grid = sum(1 + e.skipped for e in ws)
        out["live"] = {"windows_analysed": len(ws), "windows_of_the_grid": grid,
                       "analysed_fraction": round(len(ws) / grid, 3) if grid else None,
                       "lag_sec_median": round(float(np.median([e.lag_sec for e in ws])), 2) if ws else None,
                       "lag_sec_max": round(float(np.max([e.lag_sec for e in ws])), 2) if ws else None,
                       "lagging_events": sum(e.event == "lagging" for e in events), "wall_sec": round(wall, 2),
                       "readings": [[round(e.media_time_sec, 2), round(e.lag_sec, 2), e.skipped] for e in ws]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["alerts", "rate"])
    ap.add_argument("--clean", type=int, default=12)
    ap.add_argument("--shifted", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=4000)
    ap.add_argument("--config", choices=["tiny", "full"], default="tiny")
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--live-only", action="store_true", help="rate: skip the every-window run of the file")
    a = ap.parse_args()
    if a.what == "alerts":
        print(json.dumps(run_alerts(a.clean, a.shifted, a.seconds, a.seed)))
    else:
        print(json.dumps(run_rate(a.config, a.seconds, a.speed, capacity=not a.live_only)))


if __name__ == "__main__":
    main()
