"""The benchmark scripts still run (they are not timed here: numbers come from running them by hand)."""

import json
import subprocess
import sys
from pathlib import Path

from _shared import MEDIA, needs_shared

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_probe_sync_head_runs_and_its_features_hold_the_offset():
    out = subprocess.run([sys.executable, str(BENCH / "probes" / "probe_sync_head.py"), "--steps", "2", "--every", "1",
                          "--noise", "0", "--distr", "0", "--curriculum", "1", "--qk-std", "0.25", "--pos", "sincos1"],
                         capture_output=True, text=True, check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    # cross-correlating the clean event indicators reads the offset far above chance (1/21): the features
    # are built with the package's sign convention, so a model could learn it
    assert rows[0]["xcorr_acc"] > 0.6
    assert [r["step"] for r in rows[1:]] == [0, 1, 2] and all(0 <= r["acc1"] <= 1 for r in rows[1:])


def test_probe_encoder_timing_reads_offsets_from_novelty(tmp_path):
    sys.path.insert(0, str(BENCH / "probes"))
    try:
        import probe_encoder_timing as probe
    finally:
        sys.path.remove(str(BENCH / "probes"))
    import torch

    from synchformer.model import ModelConfig

    grid = ModelConfig.tiny().offset_grid()
    vt, at = probe.token_times(14, 8), probe.token_times(14, 6)
    events = torch.tensor([0.9, 2.1, 2.6, 4.3])  # seconds into the video window
    gen = torch.Generator().manual_seed(0)
    for c in (0, 7, 10, 13, 20):
        offset = float(grid[c])  # audio leads by `offset`: each event is heard at t - offset

        def feats(times, shift, per):
            near = ((times[:, None] - (events - shift)[None]).abs() < 0.06).any(1).float()
            base = torch.randn(16, generator=gen)
            f = base + near[:, None] * 3 * torch.ones(16) + 0.1 * torch.randn(len(times), 16, generator=gen)
            return f.view(14, per, 16)

        assert probe.predict(feats(vt, 0.0, 8), feats(at, offset, 6), grid) == c


def test_probe_encoder_timing_runs_on_a_synth_folder(tmp_path):
    from synchformer.training.synth import synth

    csv_path = synth(tmp_path / "bench", 2, seed=5, duration=7.0, size=32, progress=False)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": {"preset": "tiny", "image_size": 32}, "cache_features": True,
                               "feature_video_step": 8,
                               "data": {"train": str(csv_path), "valid": str(csv_path),
                                        "cache_dir": str(tmp_path / "cache")}}))
    out = subprocess.run([sys.executable, str(BENCH / "probes" / "probe_encoder_timing.py"), "--config", str(cfg)],
                         capture_output=True, text=True, check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    res = json.loads(out.stdout.splitlines()[-1])
    assert res["windows"] == 2 and res["encoders"] == "random" and res["ceiling"]["clips"] == 2
    assert 0 <= res["accuracy_1"] <= res["accuracy_1_tol1"] <= 1


def test_bench_loader_compares_where_inputs_are_made():
    out = subprocess.run([sys.executable, str(BENCH / "bench_loader.py"), "--image-size", "32", "--clips", "2",
                          "--samples", "4", "--batch-size", "2", "--device", "cpu"],
                         capture_output=True, text=True, check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    r = json.loads(out.stdout.splitlines()[-1])
    assert r["worker_ms_per_sample"]["device"] > 0 and r["worker_speedup"] > 0
    assert r["bytes_per_sample"]["device"] < r["bytes_per_sample"]["loader"] / 2  # uint8 frames, raw audio
    assert r["epoch_batches"] == 1 and min(r["epoch_sec"].values()) > 0 and r["epoch_speedup_persistent"] > 0


def test_probe_stage1_reads_out_segment_embeddings(tmp_path):
    import torch

    from synchformer.training.config import load_config
    from synchformer.training.loop import build_model, save_weights
    from synchformer.training.synth import synth

    csv_path = synth(tmp_path / "bench", 3, seed=5, duration=10.0, size=32, progress=False)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": {"preset": "tiny", "image_size": 32},
                               "data": {"train": str(csv_path), "cache_dir": str(tmp_path / "cache")}}))
    c = load_config("contrastive", cfg)
    torch.manual_seed(c.seed)
    save_weights(build_model(c), tmp_path / "start.safetensors", {}, encoders_only=True)  # the same start
    out = subprocess.run([sys.executable, str(BENCH / "probes" / "probe_stage1.py"), "--config", str(cfg), "--weights",
                          str(tmp_path / "start.safetensors")],
                         capture_output=True, text=True, check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    start, again = (json.loads(line) for line in out.stdout.splitlines()[-2:])
    assert start["windows"] == 3 and start["segments"] == 42 and start["chance"] == round(1 / 42, 4)
    for m in ("visual", "audio"):
        assert 0 < start[m]["spread"] < 1 and "event_sep" in start[m]  # a synth folder: events are known
    assert {k: v for k, v in again.items() if k != "weights"} == {k: v for k, v in start.items() if k != "weights"}


def test_released_timing_compares_both_timings(tmp_path):
    """benchmarks/released_timing.py on clips it makes (their sound starts with the picture, so the two timings
    differ by 1024 samples) and a small model that says it was trained on the authors' timing."""
    import dataclasses

    from synchformer.model import ModelConfig, Synchformer, save_model
    from synchformer.training.synth import synth

    csv = synth(tmp_path / "clips", 3, seed=123, progress=False)
    weights = tmp_path / "m.safetensors"
    save_model(Synchformer(dataclasses.replace(ModelConfig.tiny(image_size=32), timing="authors")), weights)
    out = subprocess.run([sys.executable, str(BENCH / "released_timing.py"), "--weights", str(weights),
                          "--csv", str(csv), "--workers", "1", "--json"],
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    assert res["trained_timing"] == "authors"
    for timing in ("authors", "true"):
        assert res[timing]["n"] == 3 and 0 <= res[timing]["accuracy_1"] <= res[timing]["accuracy_1_tol1"] <= 1


def test_refine_offsets_compares_the_estimators_on_continuous_clips(tmp_path):
    from synchformer.model.bundled import SYNTHETIC_TINY

    out = subprocess.run([sys.executable, str(BENCH / "refine_offsets.py"), "--n", "2", "--duration", "6",
                          "--weights", str(SYNTHETIC_TINY), "--folder", str(tmp_path / "c")],
                         capture_output=True, text=True, check=True).stdout
    lines = [x for x in out.splitlines() if "|error| median" in x]
    assert len(lines) == 7 and "refined (shipped)" in out and "posterior fit" in out
    assert all(float(x.split("median")[1].split("ms")[0]) < 2000 for x in lines)


def test_bench_gpu_runs_on_a_cpu_and_both_pipelines_give_the_same_rows(tmp_path):
    out = tmp_path / "b.json"
    subprocess.run([sys.executable, str(BENCH / "bench_gpu.py"), "--device", "cpu", "--model", "tiny", "--clips", "2",
                    "--workers", "2", "--no-compile", "--iters", "1", "--batch-size", "8", "--work", str(tmp_path / "c"),
                    "--out", str(out)], capture_output=True, text=True, check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    res = json.loads(out.read_text())
    assert res["rows"] == {**res["rows"], "clips": 2, "failed": 0, "argmax_agreement": 1.0}
    assert res["encoders"]["gflop_per_segment"] > 0 and res["clips_per_sec"]["score"] > 0
    assert "fraction_of_peak" not in res["encoders"]  # no GPU, no peak: nothing is made up


@needs_shared
def test_bench_fine_pass_times_predict_with_and_without_the_second_pass():
    out = subprocess.run([sys.executable, str(BENCH / "bench_fine_pass.py"), "--config", "tiny", "--repeats", "1",
                          "--clip", str(MEDIA / "pen_hits_coin__node-opencv_motion.mov")],
                         capture_output=True, text=True, timeout=600, check=True)
    row = json.loads(out.stdout)
    assert row["fine_windows"] == row["windows"] and row["fine_segments_encoded"] > 0 and row["ratio"] > 0


def test_fix_loop_measures_fixes_and_measures_again(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH / "fix_loop.py"), "--n", "3", "--duration", "8", "--seed", "9700",
                          "--folder", str(tmp_path)], capture_output=True, text=True, timeout=600, check=True)
    rep = json.loads(out.stdout)
    assert rep["clips"] == 3 and rep["fine_weights"] == "auto"
    assert set(rep["residual_after_fix"]) == {"median_ms", "p90_ms", "max_ms"}
    assert rep["first_measurement_error"]["median_ms"] < 100


def test_bench_monitor_counts_false_alarms_and_the_alert_latency():
    out = subprocess.run([sys.executable, str(BENCH / "bench_monitor.py"), "alerts", "--clean", "1", "--shifted", "1",
                          "--seconds", "40"], capture_output=True, text=True, timeout=600, check=True)
    rep = json.loads(out.stdout)
    assert rep["streams"] == {"clean": 1, "shifted": 1, "seconds": 40.0} and 0 < rep["reliable_fraction"] <= 1
    rows = rep["bt1359"]["by_n"]
    assert set(rows) == {str(n) for n in range(1, 9)}
    # more readings in a row: never more false alarms
    assert all(rows[str(n + 1)]["false_alarms"] <= rows[str(n)]["false_alarms"] for n in range(1, 8))
    assert rows["1"]["missed"] == 0 and rows["1"]["latency_sec_median"] is not None
