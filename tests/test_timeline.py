"""Per-window results of a whole video -> one offset, drift, heat map (synthetic probabilities; fast)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys

import numpy as np
import pytest

from synchformer.errors import SynchformerError
from synchformer.inference.drift import Drift, fit_drift, t_quantile
from synchformer.inference.distributions import overlap_weights, window_offsets
from synchformer.inference.pooling import Summary, summarize
from synchformer.io.outputs import current_umask
from synchformer.plots import PlotDependencyError
from synchformer.plots.heatmap import plot_heatmap

GRID = np.round(np.linspace(-2.0, 2.0, 21), 6)
L = 4.8


def cls(offset: float) -> int:
    return int(np.argmin(np.abs(GRID - offset)))


def spread(peaks: dict[int, float]) -> np.ndarray:
    """A distribution with the given class probabilities; the rest spread evenly over the other classes."""
    p = np.zeros(len(GRID))
    for k, v in peaks.items():
        p[k] = v
    rest = [k for k in range(len(GRID)) if k not in peaks]
    p[rest] = (1.0 - sum(peaks.values())) / len(rest)
    return p


def synth(rng, starts, true_fn, *, jitter=0.06, logit_noise=0.5, p_wrong=0.2, p_silent=0.0,
          correlated=False, window_sec=L):
    """Window probabilities like a real model's: a peak (width 0.08-0.2 s, 60 ms jitter) at the true offset
    plus logit noise (random argmax errors), ``p_wrong`` windows confidently wrong (p ~ 0.9-0.999 at a random
    class), ``p_silent`` windows near-uniform. ``correlated``: the jitter is the window's average of
    per-0.1 s noise, so overlapping windows err together, as windows sharing video do."""
    starts = np.asarray(starts, float)
    n = len(starts)
    c = starts + window_sec / 2
    if correlated:
        tt = np.arange(starts.min() - 1, starts.max() + window_sec + 1, 0.1)
        cs = np.concatenate([[0.0], np.cumsum(rng.normal(0, jitter * math.sqrt(window_sec / 0.1), len(tt)))])
        i0, i1 = np.searchsorted(tt, starts), np.searchsorted(tt, starts + window_sec)
        jit = (cs[i1] - cs[i0]) / (i1 - i0)
    else:
        jit = rng.normal(0, jitter, n)
    mu = true_fn(c) + jit
    tau = rng.uniform(0.08, 0.2, n)
    logits = -((GRID[None] - mu[:, None]) ** 2) / (2 * tau[:, None] ** 2) + rng.normal(0, logit_noise, (n, 21))
    wrong = rng.random(n) < p_wrong
    logits[wrong] = rng.normal(0, 1, (wrong.sum(), 21))
    logits[wrong, rng.integers(0, 21, wrong.sum())] += rng.uniform(4, 9, wrong.sum())
    silent = (rng.random(n) < p_silent) & ~wrong
    logits[silent] = rng.normal(0, 0.05, (silent.sum(), 21))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def majority_vote(probs) -> float:
    votes = np.bincount(np.argmax(probs, axis=1), minlength=len(GRID))
    return float(GRID[np.argmax(votes)])


# ------------------------------------------------------------------------------------- rows, weights

def test_overlap_weights_count_every_second_once():
    starts = np.arange(0, 20, 0.5)
    a = overlap_weights(starts, L)
    assert np.allclose(a[3:-3], 0.5 / L)  # hop / window away from the ends
    assert a.sum() == pytest.approx((starts[-1] + L - starts[0]) / L)  # |union| / L
    assert np.allclose(overlap_weights([0.0, 10.0, 30.0], L), 1.0)  # no overlap: one window each
    shuffled = np.array([5.0, 0.0, 2.5])
    assert np.allclose(overlap_weights(shuffled, L), overlap_weights(np.sort(shuffled), L)[[2, 0, 1]])
    assert overlap_weights([3.0, 3.0], L).sum() == pytest.approx(1.0)  # duplicates share one window


def test_rows_report_offset_probability_entropy():
    p = np.stack([spread({cls(0.4): 0.7}), np.full(21, 1 / 21), np.eye(21)[cls(-1.0)]])
    s = summarize([0.0, 2.0, 4.0], p, GRID)
    r0, r1, r2 = s.windows
    assert (r0.offset_sec, r0.probability, r0.start_sec, r0.end_sec) == (pytest.approx(0.4), pytest.approx(0.7), 0.0,
                                                                        pytest.approx(L))
    assert r1.entropy_nats == pytest.approx(math.log(21)) and r1.entropy_norm == pytest.approx(1.0)
    assert r2.entropy_nats == pytest.approx(0.0) and r2.offset_sec == pytest.approx(-1.0)
    assert 0 < r0.entropy_norm < 1 and all(r.used and r.note is None and r.sync_prob is None for r in s.windows)


def test_window_offsets_are_finer_than_the_grid():
    p = spread({cls(0.2): 0.4, cls(0.4): 0.4})  # halfway between two classes
    assert window_offsets(p[None], GRID)[0] == pytest.approx(0.3, abs=0.01)
    edge = spread({0: 0.9})
    assert -2.0 <= window_offsets(edge[None], GRID)[0] < -1.9  # only the inner neighbour exists
    assert np.isnan(window_offsets(np.full((1, 21), np.nan), GRID)[0])


# -------------------------------------------------------------------------------------------- pooling

def test_pools_recover_the_truth_where_a_majority_vote_does_not():
    # the true class is every window's strong second; the argmaxes scatter, four of them on one wrong class
    truth, decoy = cls(0.4), cls(-1.4)
    others = [cls(v) for v in (-2.0, -0.6, 1.2, 1.6, 2.0, -1.0)]
    probs = np.stack([spread({truth: 0.2, decoy: 0.26}) for _ in range(4)] +
                     [spread({truth: 0.2, k: 0.26}) for k in others])
    starts = np.arange(10) * L
    assert majority_vote(probs) == pytest.approx(-1.4)
    s = summarize(starts, probs, GRID)
    assert s.offset_sec == pytest.approx(0.4) and s.log_pool.offset_sec == pytest.approx(0.4)
    assert s.agreement == 0.0  # no window's argmax is near it, and the summary says so


def test_a_few_confidently_wrong_windows_fool_the_log_pool_but_not_the_reported_mean_pool():
    truth, wrong = cls(0.4), cls(-1.6)
    right = [spread({truth: 0.35, truth - 1: 0.12, truth + 1: 0.12}) for _ in range(12)]
    bad = [np.where(np.arange(21) == wrong, 1.0 - 20e-8, 1e-8) for _ in range(3)]  # p(true) ~ 1e-8
    probs = np.stack(right + bad)
    starts = np.arange(len(probs)) * L
    s = summarize(starts, probs, GRID)
    # log pool: 3 * log(1e-6) = -41 nats against the truth outweighs 12 * log(0.35 / 0.023) = +33
    assert s.log_pool.offset_sec == pytest.approx(-1.6)
    assert s.pooling == "mean" and s.offset_sec == pytest.approx(0.4)  # what is reported
    assert s.mean_pool.confidence == pytest.approx(12 * 0.35 / 15, abs=1e-6)
    assert s.pools_agree is False and "log pool" in s.message
    assert s.agreement == pytest.approx(12 / 15)
    assert majority_vote(probs) == pytest.approx(0.4)


def test_the_price_of_the_mean_pool_broad_right_windows_against_moderately_wrong_ones():
    # documented trade-off: correct windows are broad but all rule the decoy out; the decoy windows are only
    # moderately sure and do not rule the truth out. The log pool is right, the mean pool is not.
    truth, decoy = cls(0.0), cls(1.4)
    right = [spread({truth: 0.2, truth - 1: 0.17, truth + 1: 0.17, truth - 2: 0.15, truth + 2: 0.15})
             for _ in range(10)]
    wrong = [spread({decoy: 0.6}) for _ in range(4)]
    s = summarize(np.arange(14) * L, np.stack(right + wrong), GRID)
    assert s.log_pool.offset_sec == pytest.approx(0.0)
    assert s.mean_pool.offset_sec == pytest.approx(1.4)
    assert s.pools_agree is False


def test_overlapping_windows_are_tempered_to_the_effective_number_of_windows():
    p = spread({cls(0.2): 0.5})
    dense = summarize(np.arange(21) * 0.24, np.tile(p, (21, 1)), GRID)  # 21 windows over 9.6 s
    assert dense.effective_windows == pytest.approx(2.0)
    two = p ** 2 / np.sum(p ** 2)  # the product of two independent windows
    assert np.allclose(dense.log_pool.distribution, two)
    assert dense.log_pool.confidence == pytest.approx(two.max())
    untempered = p ** 21 / np.sum(p ** 21)
    assert untempered.max() > 0.999 > dense.log_pool.confidence
    assert np.allclose(dense.mean_pool.distribution, p)


def test_refined_offset_lies_between_classes():
    p = spread({cls(0.2): 0.45, cls(0.4): 0.40})
    s = summarize(np.arange(5) * 1.0, np.tile(p, (5, 1)), GRID)
    assert s.offset_sec == pytest.approx(0.2)
    assert 0.25 < s.refined_offset_sec < 0.32


def test_pooled_offset_on_realistic_windows():
    rng = np.random.default_rng(7)
    starts = np.arange(0, 60, 0.64)
    probs = synth(rng, starts, lambda c: np.full_like(c, -0.6), p_silent=0.1)
    s = summarize(starts, probs, GRID)
    assert s.offset_sec == pytest.approx(-0.6) and s.log_pool.offset_sec == pytest.approx(-0.6)
    assert s.pools_agree and 0.6 < s.agreement < 0.95 and abs(s.refined_offset_sec + 0.6) < 0.05
    assert "lags the video by 0.60 s" in s.message and not s.drift.detected


# ------------------------------------------------------------------------------------- synchronizability

def test_windows_that_are_not_synchronizable_are_left_out_and_reported():
    truth, decoy = cls(0.6), cls(-1.0)
    probs = np.stack([spread({truth: 0.6})] * 6 + [spread({decoy: 0.95})] * 4)
    sync = np.array([0.9] * 6 + [0.1, 0.2, 0.3, 0.49])
    starts = np.arange(10) * 2.0
    s = summarize(starts, probs, GRID, sync_probs=sync)
    assert s.left_out == [6, 7, 8, 9] and s.n_used == 6
    assert s.offset_sec == pytest.approx(0.6) and s.agreement == 1.0
    assert [r.used for r in s.windows] == [True] * 6 + [False] * 4
    assert s.windows[7].note == "P(synchronizable) 0.20 below 0.5" and s.windows[7].sync_prob == pytest.approx(0.2)
    assert "4 of 10 windows left out as not synchronizable (P(synchronizable): 4 windows)" in s.message
    d = s.to_dict()
    assert d["left_out"] == {"min_sync_prob": 0.5, "count": 4, "indices": [6, 7, 8, 9],
                             "why": "P(synchronizable): 4 windows"}
    assert s.windows[7].reasons == ["P(synchronizable) 0.20 below 0.5"] and not s.windows[7].reliable
    # without the filter the decoy windows (confident) would pull the mean pool towards -1.0
    loose = summarize(starts, probs, GRID, sync_probs=sync, min_sync_prob=0.0)
    assert loose.n_used == 10 and loose.mean_pool.distribution[decoy] > s.mean_pool.distribution[decoy]
    # a NaN sync_prob means unknown: the window stays in
    sync[0] = np.nan
    s2 = summarize(starts, probs, GRID, sync_probs=sync)
    assert s2.windows[0].used and s2.windows[0].sync_prob is None


def test_no_synchronizable_window_gives_no_overall_offset():
    rng = np.random.default_rng(0)
    starts = np.arange(0, 40, 1.0)
    probs = synth(rng, starts, lambda c: np.full_like(c, 0.4))
    s = summarize(starts, probs, GRID, sync_probs=np.full(len(starts), 0.2))
    assert not s.synchronizable and s.n_used == 0 and len(s.left_out) == len(starts)
    assert s.offset_sec is None and s.confidence is None and s.distribution is None and s.agreement is None
    assert s.drift is None
    assert s.message.startswith("no synchronizable window: no overall offset")
    d = json.loads(json.dumps(s.to_dict(), allow_nan=False))
    assert d["offset_sec"] is None and d["distribution"] is None and d["synchronizable"] is False
    assert d["pools"] == {"mean": None, "log": None} and d["drift"] is None


def test_invalid_rows_and_empty_input():
    p = np.stack([spread({cls(0.0): 0.8}), np.full(21, np.nan), -np.ones(21) / 21, spread({cls(0.0): 0.8}) * 3])
    s = summarize([0, 1, 2, 3], p, GRID)
    assert s.n_invalid == 2 and s.n_used == 2 and s.offset_sec == pytest.approx(0.0)
    assert s.windows[1].note == "invalid probabilities" and s.windows[1].offset_sec is None
    assert s.windows[3].probability == pytest.approx(0.8)  # rows are renormalised
    none = summarize([0, 1], np.full((2, 21), np.nan), GRID)
    assert none.offset_sec is None and "no window with valid probabilities" in none.message
    empty = summarize([], np.zeros((0, 21)), GRID)
    assert empty.offset_sec is None and empty.to_dict()["n_windows"] == 0
    with pytest.raises(ValueError):
        summarize([0, 1], np.ones((3, 21)) / 21, GRID)
    with pytest.raises(ValueError):
        summarize([0], np.ones((1, 20)) / 20, GRID)


def test_to_dict_is_plain_json_with_the_documented_keys():
    rng = np.random.default_rng(1)
    starts = np.arange(0, 90, 1.5)
    probs = synth(rng, starts, lambda c: 0.2 + 0.3 / 90 * c)
    sync = rng.uniform(0.3, 1.0, len(starts))
    d = summarize(starts, probs, GRID, sync_probs=sync).to_dict()
    text = json.dumps(d, allow_nan=False)  # no numpy types, no NaN

    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, list):
            return all(plain(v) for v in x)
        return x is None or type(x) in (bool, int, float, str)

    assert plain(json.loads(text)) and plain(d)
    assert set(d) == {"schema", "window_sec", "grid_sec", "n_windows", "n_used", "n_invalid", "left_out",
                      "synchronizable", "reliable", "reasons", "pooling", "offset_sec", "confidence",
                      "refined_offset_sec", "refined_interval_sec", "fine", "agreement",
                      "distribution", "pools", "pools_agree", "effective_windows", "message", "drift", "windows"}
    assert d["schema"] == "synchformer.timeline/1" and len(d["distribution"]) == 21 and len(d["grid_sec"]) == 21
    assert sum(d["distribution"]) == pytest.approx(1.0, abs=1e-3)
    assert set(d["windows"][0]) == {"index", "start_sec", "end_sec", "offset_sec", "probability",
                                    "refined_offset_sec", "entropy_nats", "entropy_norm", "sync_prob", "used", "note",
                                    "reliable", "reasons", "audio_events"}
    assert d["windows"][1]["start_sec"] == 1.5 and d["windows"][1]["end_sec"] == 6.3
    assert set(d["drift"]) >= {"detected", "reason", "slope_ms_per_min", "stderr_ms_per_min", "ci95_ms_per_min",
                               "intercept_sec", "offset_at_start_sec", "offset_at_end_sec", "t_stat", "step", "rule"}
    assert "windows" not in summarize(starts, probs, GRID).to_dict(windows=False)


# ----------------------------------------------------------------------------------------------- drift

def test_t_quantiles():
    assert t_quantile(0.975, 5) == pytest.approx(2.5706, abs=1e-3)
    assert t_quantile(0.999, 10) == pytest.approx(4.1437, abs=1e-3)
    assert t_quantile(0.975, 1e6) == pytest.approx(1.95996, abs=1e-3)
    assert t_quantile(0.999, 1) == pytest.approx(318.31, rel=1e-3)


@pytest.mark.parametrize("seed", range(5))
def test_drift_of_half_a_second_over_three_minutes_is_detected_with_its_slope(seed):
    rng = np.random.default_rng(100 + seed)
    starts = np.arange(0, 180 - L + 1e-9, 1.0)
    o0 = rng.uniform(-1.0, 0.5)
    slope = 500.0 / 3  # ms/min
    probs = synth(rng, starts, lambda c: o0 + slope / 60000 * c)
    d = fit_drift(starts, probs, GRID)
    assert d.detected, d.reason
    assert d.slope_ms_per_min == pytest.approx(slope, rel=0.15)
    assert d.ci95_ms_per_min[0] > 0 and d.t_stat > 3
    assert d.offset_at_start_sec == pytest.approx(o0, abs=0.08)
    assert d.offset_at_end_sec == pytest.approx(o0 + slope / 60000 * 180, abs=0.08)
    assert d.intercept_sec == pytest.approx(d.offset_at_start_sec - d.t_start_sec * d.slope_ms_per_min / 60000)
    assert d.reason.startswith("drift +")


@pytest.mark.parametrize("seed,hop,correlated", [(0, 2.0, False), (1, 0.64, True)])
def test_frame_rate_mismatch_drift_is_detected(seed, hop, correlated):
    # 25 fps audio played against 24.975 fps video: -60 ms per minute
    rng = np.random.default_rng(seed)
    starts = np.arange(0, 600 - L + 1e-9, hop)
    probs = synth(rng, starts, lambda c: 0.3 - 60 / 60000 * c, correlated=correlated, p_silent=0.05)
    d = fit_drift(starts, probs, GRID)
    assert d.detected, d.reason
    assert d.slope_ms_per_min == pytest.approx(-60, rel=0.15)
    assert d.change_sec == pytest.approx(-0.6, abs=0.1)


def test_no_false_drift_on_constant_offsets_over_50_seeds():
    # realistic noise: argmax errors from logit noise and jitter, 20 % confidently wrong windows, 5 % silence;
    # half of the videos with errors correlated across overlapping windows (windows sharing video err together)
    claimed = []
    for seed in range(50):
        rng = np.random.default_rng(seed)
        dur = [40, 60, 120, 180, 300][seed % 5]
        hop = [0.32, 0.64, 1.0, 2.0, 2.56][(seed // 5) % 5]
        off = rng.choice([-0.6, 0.0, 0.1, 0.3, 1.0])  # on the grid and between classes
        starts = np.arange(0, dur - L + 1e-9, hop)
        probs = synth(rng, starts, lambda c: np.full_like(c, off), p_silent=0.05, correlated=seed % 2 == 1)
        d = fit_drift(starts, probs, GRID)
        if d.detected:
            claimed.append((seed, d.reason))
        assert d.change_sec is None or abs(d.change_sec) < 0.5
    assert not claimed


def test_small_drift_is_not_claimed():
    rng = np.random.default_rng(3)
    starts = np.arange(0, 180 - L + 1e-9, 1.0)
    d = fit_drift(starts, synth(rng, starts, lambda c: 0.2 + 0.05 / 180 * c), GRID)  # 0.05 s in 3 minutes
    assert not d.detected
    assert d.reason.startswith(("no significant drift", "drift too small"))


@pytest.mark.parametrize("at,jump,tilts", [(140.0, 0.6, False), (120.0, 0.3, True)])
def test_an_abrupt_change_is_not_called_drift(at, jump, tilts, tmp_path):
    rng = np.random.default_rng(5)
    starts = np.arange(0, 180 - L + 1e-9, 1.0)
    probs = synth(rng, starts, lambda c: np.where(c < at, 0.0, jump), p_wrong=0.1)
    d = fit_drift(starts, probs, GRID)
    assert not d.detected
    # a far jump is rejected by the robust line (no slope); a near one tilts it, but the slope does not
    # survive next to the jump
    assert d.reason.startswith("not a steady drift" if tilts else "no significant drift"), d.reason
    assert "the offset jumps at" in d.reason
    assert d.step_at_sec == pytest.approx(at, abs=4)
    assert d.step_from_sec == pytest.approx(0.0, abs=0.06) and d.step_to_sec == pytest.approx(jump, abs=0.06)
    assert d.to_dict()["step"]["at_sec"] == pytest.approx(d.step_at_sec, abs=1e-3)
    s = summarize(starts, probs, GRID)
    assert "jumps at" in s.message and not s.drift.detected
    if not tilts and importlib.util.find_spec("matplotlib"):
        plot_heatmap(starts, probs, GRID, s, tmp_path / "step.png")


def test_drift_needs_enough_windows_time_and_sane_input():
    rng = np.random.default_rng(2)
    steep = lambda c: -1.0 + 0.05 * c  # noqa: E731  (3000 ms/min)
    starts = np.arange(5) * 5.0
    d = fit_drift(starts, synth(rng, starts, steep, p_wrong=0), GRID)
    assert not d.detected and d.reason.startswith("too few windows")
    starts = np.arange(0, 20, 0.5)  # plenty of windows, 20 s
    d = fit_drift(starts, synth(rng, starts, steep, p_wrong=0), GRID)
    assert not d.detected and d.reason.startswith("too short") and d.slope_ms_per_min > 1000
    starts = np.arange(0, 120, 1.0)
    same = np.tile(spread({cls(0.4): 0.7}), (len(starts), 1))
    d = fit_drift(starts, same, GRID)
    assert not d.detected and d.slope_ms_per_min == 0.0 and "same offset" in d.reason
    assert d.offset_at_start_sec == pytest.approx(0.4)
    # NaNs in starts, probabilities or weights drop those windows, nothing more
    probs = synth(rng, starts, lambda c: 0.3 - 0.004 * c)
    base = fit_drift(starts, probs, GRID)
    s2, p2, w2 = starts.copy(), probs.copy(), np.ones(len(starts))
    s2[3], p2[10, 4], w2[20] = np.nan, np.nan, np.nan
    d = fit_drift(s2, p2, GRID, weights=w2)
    assert base.detected and d.detected and d.n_fit <= base.n_fit - 3
    assert d.slope_ms_per_min == pytest.approx(base.slope_ms_per_min, rel=0.05)
    d = fit_drift(starts, np.full((len(starts), 21), np.nan), GRID)
    assert not d.detected and d.n_fit == 0 and d.slope_ms_per_min is None
    assert json.dumps(d.to_dict(), allow_nan=False)
    d = fit_drift([], np.zeros((0, 21)), GRID)
    assert isinstance(d, Drift) and not d.detected
    d = fit_drift(starts, np.full((len(starts), 21), 1 / 21), GRID)  # silence throughout
    assert not d.detected and d.n_fit == 0


def test_summary_carries_the_drift_of_its_used_windows():
    rng = np.random.default_rng(11)
    starts = np.arange(0, 240 - L + 1e-9, 1.28)
    probs = synth(rng, starts, lambda c: -0.5 + 0.8 / 240 * c)
    sync = np.where((starts > 100) & (starts < 130), 0.1, 0.9)
    s = summarize(starts, probs, GRID, sync_probs=sync)
    assert s.drift.detected and s.drift.n_windows == s.n_used
    assert s.drift.slope_ms_per_min == pytest.approx(200, rel=0.15)
    assert "drifts +" in s.message


# ------------------------------------------------------------------------------------------------ plot

def _plot_inputs():
    rng = np.random.default_rng(4)
    starts = np.arange(0, 150 - L + 1e-9, 0.96)
    probs = synth(rng, starts, lambda c: -0.3 + 0.6 / 150 * c, p_silent=0.05)
    sync = np.where((starts > 40) & (starts < 60), 0.2, 0.9)
    return starts, probs, sync, summarize(starts, probs, GRID, sync_probs=sync)


def test_plot_writes_a_png_atomically(tmp_path):
    pytest.importorskip("matplotlib")
    starts, probs, sync, s = _plot_inputs()
    assert s.drift.detected and s.left_out
    out = tmp_path / "heat.png"
    out.write_bytes(b"old")
    assert plot_heatmap(starts, probs, GRID, s, out, sync_probs=sync, title="clip.mp4") == str(out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert os.listdir(tmp_path) == ["heat.png"]  # no temporary file left behind
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~current_umask()  # an ordinary file, not mkstemp's 0600
    # sync probabilities come from the summary when not given; no usable window still draws
    none = summarize(starts, probs, GRID, sync_probs=np.zeros(len(starts)))
    plot_heatmap(starts, probs, GRID, none, tmp_path / "none.png")
    plot_heatmap([], np.zeros((0, 21)), GRID, summarize([], np.zeros((0, 21)), GRID), tmp_path / "empty.png")
    assert sorted(os.listdir(tmp_path)) == ["empty.png", "heat.png", "none.png"]
    with pytest.raises(SynchformerError, match="folder does not exist"):
        plot_heatmap(starts, probs, GRID, s, tmp_path / "missing" / "x.png")
    with pytest.raises(ValueError):
        plot_heatmap(starts[:-1], probs[:-1], GRID, s, tmp_path / "x.png")


def test_plot_labels_say_whether_the_windows_cover_the_video(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from synchformer import plots

    labels = []
    real = plots.write_figure
    monkeypatch.setattr(plots, "write_figure", lambda fig, *a, **k: (labels.append(fig.axes[0].get_xlabel()),
                                                                     real(fig, *a, **k))[1])
    rng = np.random.default_rng(3)
    for starts in (np.arange(0, 60, 0.64), np.linspace(0, 3000, 32)):  # every window; a film sampled in 32
        probs = synth(rng, starts, lambda c: 0.4)
        plot_heatmap(starts, probs, GRID, summarize(starts, probs, GRID), tmp_path / "h.png")
    assert labels[0].endswith("one hop wide") and "(s)" in labels[0]
    assert "(min:s)" in labels[1] and labels[1].endswith("between them the video was not analysed")


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path, monkeypatch):
    starts, probs, sync, s = _plot_inputs()
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(PlotDependencyError, match="pip install matplotlib") as e:
        plot_heatmap(starts, probs, GRID, s, tmp_path / "x.png")
    assert isinstance(e.value, ImportError) and isinstance(e.value, SynchformerError)
    assert os.listdir(tmp_path) == []


def test_summary_type():
    s = summarize([0.0], spread({cls(0.0): 0.9})[None], GRID)
    assert isinstance(s, Summary) and s.offset_sec == 0.0 and "in sync" in s.message
    assert s.drift is not None and not s.drift.detected


def test_refined_offset_and_its_interval_come_from_the_three_classes_around_the_peak():
    from synchformer.inference.distributions import REFINED_INTERVAL_SCALE

    p = np.full(21, 1e-4)
    p[12], p[13] = 0.6, 0.4  # +0.4 s and +0.6 s
    p /= p.sum()
    s = summarize([0.0], p[None], GRID)
    q = p[11:14] / p[11:14].sum()
    r = float((q * GRID[11:14]).sum())
    half = REFINED_INTERVAL_SCALE * float(np.sqrt((q * (GRID[11:14] - r) ** 2).sum()))
    assert s.offset_sec == pytest.approx(0.4) and s.refined_offset_sec == pytest.approx(r) and 0.47 < r < 0.49
    assert s.refined_interval_sec == pytest.approx((r - half, r + half))
    d = s.to_dict()
    assert d["refined_interval_sec"] == [round(r - half, 3), round(r + half, 3)]
    assert d["pools"]["mean"]["refined_interval_sec"] == d["refined_interval_sec"]
    peaked = np.full(21, 1e-6)
    peaked[12] = 1.0
    lo, hi = summarize([0.0], (peaked / peaked.sum())[None], GRID).refined_interval_sec
    assert hi - lo < 0.002  # a certain model: a narrow interval
