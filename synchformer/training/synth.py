"""A synthetic sparse-cue benchmark: clips whose only sync evidence is a few brief audio-visual events.

Each 5 s stretch holds 1-4 events: a shape that flashes, a ball that hits an edge, or a ball that bounces off a
bar, each exactly when a short sound (a tone, a noise burst or a click train) starts. Everything else is there to
mislead: shapes that glide and rebound silently, and background noise with quiet sounds that have no picture.
A clip is a pure function of its seed.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import multiprocessing
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np

from synchformer.constants import AUDIO_SR, MAX_OFFSET_SEC, N_OFFSET_CLASSES, SAMPLES_PER_FRAME, VIDEO_FPS
from synchformer.errors import SynchformerError
from synchformer.io.decode import ffmpeg_name
from synchformer.io.outputs import write_atomic

VERSION = 1
CROP_SEC = 5.0  # the evaluation crop (video and audio) that clips.csv places
STRETCH_SEC = 5.0  # events are counted per stretch of this length
MIN_GAP_FRAMES = 10  # 0.4 s between events
EDGE_FRAMES = 5  # 0.2 s: events keep 0.1 s from the clip ends, and half the gap from a stretch border
KINDS = ("flash", "hit", "bounce")
# "workshop": another domain for adapting a model to (synchformer adapt): a textured, brighter floor, lamps that
# light up with a ring, presses that strike an anvil with sparks and a low thud, boxes that land with a puff of
# dust and a knock, silently swinging arms, and a machine hum; its event kinds, shapes, colours and sounds are
# none of the default's. Each event changes the picture at its own frame: motion that merely stops was too faint
# for the bundled model's frozen 32 px encoder to register (docs/benchmarks.md)
STYLES = ("default", "workshop")
WORKSHOP_KINDS = ("lamp", "press", "drop")


@dataclass(eq=False)  # sprites are told apart by identity
class Sprite:
    """A circle (radius ``hx``) or a rectangle (half sides ``hx``, ``hy``) of one colour, shown on frames
    ``first..last`` at ``centre(k)`` = (x, y) in pixels."""

    shape: str
    colour: np.ndarray
    hx: float
    hy: float
    first: int
    last: int
    centre: Callable[[int], tuple[float, float]]


@dataclass(frozen=True)
class Cues:
    """How hard a clip is: events per 5 s stretch, silent moving shapes and quiet unpictured sounds per
    clip / stretch (inclusive ranges), and background noise. The defaults are the benchmark; easier settings
    (one event, nothing else) serve as a curriculum for models trained from scratch. ``linked_sounds`` gives
    each event kind its own sound (flash: tone, hit: noise burst, bounce: click train), a cue of *what*
    matches besides *when*, as real videos have."""

    events: tuple[int, int] = (1, 4)
    distractors: tuple[int, int] = (1, 3)
    quiet_sounds: tuple[int, int] = (0, 3)
    noise: bool = True
    linked_sounds: bool = False  # each event kind makes its own kind of sound (the default: any kind)
    style: str = "default"  # what the clips look and sound like (STYLES); "default": the benchmark's

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, not {self.style!r}")
        for name, lo_min in (("events", 1), ("distractors", 0), ("quiet_sounds", 0)):
            lo, hi = getattr(self, name)
            if not lo_min <= lo <= hi:
                raise ValueError(f"{name} must be a range lo,hi with {lo_min} <= lo <= hi, got {lo},{hi}")

    def changed(self) -> dict:
        """The settings that differ from the benchmark's (what synth.json records)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v != getattr(Cues(), k)}


@dataclass
class Plan:
    """Everything a clip shows and plays; the sprites are drawn in order, so events are on top."""

    events: list[float]  # seconds, on the frame grid
    kinds: list[str]
    actors: list[Sprite]  # the sprite that makes each event (a bounce's ball, not its bar)
    n_frames: int
    background: np.ndarray  # (size, size, 3) float
    sprites: list[Sprite]
    audio: np.ndarray  # float32 (n_frames * 640,)


def _colour(rng) -> np.ndarray:
    # bright enough to stand out from the dark background: one channel near full
    c = rng.integers(0, 256, 3)
    c[rng.integers(3)] = rng.integers(200, 256)
    return c.astype(np.float64)


def _still(x: float, y: float):
    return lambda k: (x, y)


def _reflect(x: float, lo: float, hi: float) -> float:
    """``x`` folded into [lo, hi] like a point bouncing between two walls."""
    span = hi - lo
    y = (x - lo) % (2 * span)
    return lo + span - abs(y - span)


def _event_frames(rng, n_frames: int, lo_hi: tuple[int, int] = (1, 4)) -> list[int]:
    """1-4 (``lo_hi``) event frames per full 5 s stretch, uniform subject to the gaps (sorted draws spread by
    the gap)."""
    per = round(STRETCH_SEC * VIDEO_FPS)
    frames = []
    for start in range(0, n_frames, per):
        lo, hi = start + EDGE_FRAMES, min(start + per, n_frames) - EDGE_FRAMES
        fits = (hi - lo) // MIN_GAP_FRAMES + 1 if hi >= lo else 0  # a short last stretch holds fewer
        m = min(int(rng.integers(lo_hi[0], lo_hi[1] + 1)), fits)
        draws = np.sort(rng.integers(lo, hi - (m - 1) * MIN_GAP_FRAMES + 1, m))
        frames += [int(d) + i * MIN_GAP_FRAMES for i, d in enumerate(draws)]
    return frames


def _flash(rng, f: int, size: int) -> list[Sprite]:
    """A filled circle or square, 15-40 % of the frame, shown for two frames from frame f."""
    half = size * rng.uniform(0.15, 0.40) / 2
    x, y = rng.uniform(half, size - half, 2)
    shape = "circle" if rng.random() < 0.5 else "rect"
    return [Sprite(shape, _colour(rng), half, half, f, f + 1, _still(x, y))]


def _hit(rng, f: int, size: int) -> list[Sprite]:
    """A ball that travels (accelerating, like a fall) to the bottom or a side edge and touches it at frame f,
    then vanishes or lies there a moment."""
    r = size * rng.uniform(0.05, 0.09)
    axis, sign = [(1, 1), (0, 1), (0, -1)][rng.integers(3)]  # (0 = x, 1 = y): bottom, right, left
    lead = int(rng.integers(8, 16))
    contact = size - r if sign > 0 else r
    dist = rng.uniform(0.3, 0.7) * (size - 2 * r)
    across_end = rng.uniform(r, size - r)
    drift = rng.uniform(-0.15, 0.15) * size
    linear = rng.uniform(0.2, 1.0)  # the rest of the way is covered by a constant acceleration

    def centre(k):
        s = min(1.0, (k - (f - lead)) / lead)
        along = contact - sign * dist * (1 - (linear * s + (1 - linear) * s * s))
        across = across_end + drift * (1 - s)
        return (along, across) if axis == 0 else (across, along)

    rest = 0 if rng.random() < 0.5 else int(rng.integers(5, 15))
    return [Sprite("circle", _colour(rng), r, r, f - lead, f + rest, centre)]


def _bounce(rng, f: int, size: int) -> list[Sprite]:
    """A ball that meets a bar at frame f, where its velocity across the bar reverses."""
    r = size * rng.uniform(0.05, 0.08)
    thick = max(1.0, 0.02 * size)  # half thickness of the bar
    length = size * rng.uniform(0.15, 0.3)  # half length
    axis, sign = int(rng.integers(2)), 1 if rng.random() < 0.5 else -1
    lead = int(rng.integers(8, 16))
    travel = min(size * rng.uniform(0.02, 0.04) * lead, size - 2 * r - 2 * thick - 2)
    speed = travel / lead
    bar = rng.uniform(2 * r + thick + travel, size - thick - 1)  # room for the ball on its side of the bar
    if sign < 0:
        bar = size - bar
    contact = bar - sign * (thick + r)
    bar_across = rng.uniform(length, size - length)
    across_at_f = bar_across + rng.uniform(-0.5, 0.5) * length
    slide = rng.uniform(-0.5, 0.5) * speed  # along the bar, kept through the bounce

    def centre(k):
        along = contact - sign * speed * abs(k - f)
        across = across_at_f + slide * (k - f)
        return (along, across) if axis == 0 else (across, along)

    hx, hy = (thick, length) if axis == 0 else (length, thick)
    bx, by = (bar, bar_across) if axis == 0 else (bar_across, bar)
    return [Sprite("rect", _colour(rng), hx, hy, f - lead, f + lead, _still(bx, by)),
            Sprite("circle", _colour(rng), r, r, f - lead, f + lead, centre)]


def _distractor(rng, n_frames: int, size: int) -> Sprite:
    """A shape gliding at constant speed for the whole clip, rebounding off the frame edges without a sound."""
    half = size * rng.uniform(0.04, 0.10)
    x0, y0 = rng.uniform(half, size - half, 2)
    speed = size * rng.uniform(0.1, 0.6) / VIDEO_FPS
    angle = rng.uniform(0, 2 * np.pi)
    vx, vy = speed * np.cos(angle), speed * np.sin(angle)
    shape = "circle" if rng.random() < 0.5 else "rect"

    def centre(k):
        return _reflect(x0 + vx * k, half, size - half), _reflect(y0 + vy * k, half, size - half)

    return Sprite(shape, _colour(rng), half, half, 0, n_frames - 1, centre)


def _background(rng, size: int) -> np.ndarray:
    top = rng.integers(0, 70, 3).astype(np.float64)
    bottom = np.clip(top + rng.integers(-30, 31, 3), 0, 90) if rng.random() < 0.5 else top
    ramp = np.linspace(0, 1, size)[:, None, None]
    img = top + (bottom - top) * ramp  # (size, 1, 3): a vertical gradient ...
    img = np.broadcast_to(img, (size, size, 3))
    return img if rng.random() < 0.5 else img.transpose(1, 0, 2)  # ... or a horizontal one


def _sound(rng, peak: float, kind: int | None = None) -> np.ndarray:
    """40-80 ms: a decaying tone (kind 0), a noise burst (1) or a click train (2), random unless ``kind`` is
    given, with its loudest sample at ``peak``."""
    n = int(rng.uniform(0.04, 0.08) * AUDIO_SR)
    t = np.arange(n) / AUDIO_SR
    drawn = rng.integers(3)  # drawn either way: the rest of the clip is the same whether linked or not
    kind = drawn if kind is None else kind
    if kind == 0:
        freq = math.exp(rng.uniform(math.log(300), math.log(3000)))
        x = np.sin(2 * np.pi * freq * t) * np.exp(-t / (n / AUDIO_SR * rng.uniform(0.15, 0.4)))
    elif kind == 1:
        x = rng.normal(0, 1, n) * np.exp(-t / (n / AUDIO_SR * rng.uniform(0.08, 0.2)))
    else:
        x = np.zeros(n)
        step, click = int(rng.uniform(0.005, 0.015) * AUDIO_SR), int(0.002 * AUDIO_SR)
        for i, s in enumerate(range(0, n - click, step)):
            x[s:s + click] += rng.normal(0, 1, click) * np.exp(-np.arange(click) / (click / 4)) * 0.8 ** i
    x[-80:] *= np.linspace(1, 0, 80)  # 5 ms fade out: no click at the cut
    return x * (peak / np.abs(x).max())


def _add(audio: np.ndarray, sound: np.ndarray, at_sec: float) -> None:
    """Mix ``sound`` in starting at ``at_sec``; the parts outside the clip are lost."""
    s = round(at_sec * AUDIO_SR)
    a, b = max(s, 0), min(s + len(sound), len(audio))
    if a < b:
        audio[a:b] += sound[a - s:b - s]


def _plan(seed: int, duration: float, size: int, offset_sec: float, cues: Cues = Cues()) -> Plan:
    """The clip ``seed`` makes; cheap (no pixels drawn), so the events of a clip can be had without it.
    The default ``cues`` make the benchmark's clips (any other setting makes other clips from the seed)."""
    if cues.style == "workshop":
        return _plan_workshop(seed, duration, size, offset_sec, cues)
    rng = np.random.default_rng(_non_negative(seed))
    n_frames = round(duration * VIDEO_FPS)
    frames = _event_frames(rng, n_frames, cues.events)
    kinds = [KINDS[i] for i in rng.integers(len(KINDS), size=len(frames))]
    background = _background(rng, size)
    sprites = [_distractor(rng, n_frames, size) for _ in range(rng.integers(cues.distractors[0], cues.distractors[1] + 1))]
    make = {"flash": _flash, "hit": _hit, "bounce": _bounce}
    actors = []
    for f, kind in zip(frames, kinds):
        sprites += make[kind](rng, f, size)
        actors.append(sprites[-1])

    n = n_frames * SAMPLES_PER_FRAME
    noise = rng.normal(0, 1, n)
    if rng.random() < 0.5:  # low-passed (first order, cut-off 200-2000 Hz) instead of white
        spectrum = np.fft.rfft(noise) / np.sqrt(1 + (np.fft.rfftfreq(n, 1 / AUDIO_SR) / rng.uniform(200, 2000)) ** 2)
        noise = np.fft.irfft(spectrum, n)
    audio = noise * (rng.uniform(0.005, 0.03) / noise.std() * cues.noise)
    events = [f / VIDEO_FPS for f in frames]
    for t, kind in zip(events, kinds):
        _add(audio, _sound(rng, rng.uniform(0.5, 0.8), KINDS.index(kind) if cues.linked_sounds else None),
             t - offset_sec)
    for start in np.arange(0, duration, STRETCH_SEC):  # quiet sounds that nothing on screen makes
        count = rng.integers(cues.quiet_sounds[0], cues.quiet_sounds[1] + 1)
        for t in rng.uniform(start, min(start + STRETCH_SEC, duration), count):
            _add(audio, _sound(rng, rng.uniform(0.1, 0.25) * rng.uniform(0.5, 0.8)), t)
    return Plan(events, kinds, actors, n_frames, background, sprites, audio.astype(np.float32))


# ------------------------------------------------------------------------------------------- style "workshop"


def _workshop_colour(rng, lo: int = 0, hi: int = 160) -> np.ndarray:
    return rng.integers(lo, hi, 3).astype(np.float64)


def _workshop_floor(rng, size: int) -> np.ndarray:
    """A mid-grey floor with stripes (a texture the default's dark gradients never have)."""
    base = rng.integers(90, 170) + rng.integers(-20, 21, 3)
    period = rng.uniform(6, 20)
    stripes = (np.sin(2 * np.pi * np.arange(size) / period) > 0).astype(np.float64)
    img = base + rng.uniform(15, 35) * stripes[:, None, None] * np.ones((1, size, 3))
    img = img if rng.random() < 0.5 else img.transpose(1, 0, 2)
    return np.clip(img, 0, 255)


def _lamp(rng, f: int, size: int, n_frames: int) -> list[Sprite]:
    """A dark lamp housing, there all along, that lights up for three frames from frame f with a glow around it
    (12-20 % of the frame: the model's 32 px input must show it)."""
    half = size * rng.uniform(0.12, 0.2)
    x, y = rng.uniform(half * 1.3, size - half * 1.3, 2)
    dark, lit = _workshop_colour(rng, 0, 60), np.array([255.0, rng.uniform(200, 255), rng.uniform(0, 90)])
    return [Sprite("rect", dark, half, half, 0, n_frames - 1, _still(x, y)),
            Sprite("circle", lit * 0.7, half * 1.3, half * 1.3, f, f + 2, _still(x, y)),
            Sprite("circle", lit, half * 0.9, half * 0.9, f, f + 2, _still(x, y))]


def _press(rng, f: int, size: int) -> list[Sprite]:
    """A block that comes down fast onto an anvil (a bar) at frame f, throws sparks for two frames, rests, and
    goes back up."""
    w = size * rng.uniform(0.12, 0.18)
    anvil_y = size * rng.uniform(0.65, 0.85)
    x = rng.uniform(w * 1.6 + 2, size - w * 1.6 - 2)
    lead, rest = int(rng.integers(3, 6)), int(rng.integers(3, 8))
    top, contact = size * rng.uniform(0.05, 0.2), anvil_y - 0.03 * size - w

    def centre(k):
        if k < f:
            s = (k - (f - lead)) / lead
            return x, top + (contact - top) * s * s
        if k <= f + rest:
            return x, contact
        return x, contact - (contact - top) * min(1.0, (k - f - rest) / 12)

    colour = _workshop_colour(rng, 100, 230)
    sparks = np.array([255.0, 255.0, rng.uniform(150, 255)])
    return [Sprite("rect", _workshop_colour(rng, 20, 80), w * 1.6, 0.03 * size, f - lead, f + rest + 12,
                   _still(x, anvil_y)),
            Sprite("rect", colour, w, w, f - lead, f + rest + 12, centre),
            Sprite("rect", sparks, w * 1.6, 0.05 * size, f, f + 1, _still(x, anvil_y - 0.03 * size))]


def _drop(rng, f: int, size: int) -> list[Sprite]:
    """A box that falls from the top and lands on the floor line at frame f, where it stays a while, raising a
    puff of dust for three frames."""
    h = size * rng.uniform(0.09, 0.15)
    floor = size * rng.uniform(0.75, 0.9) - h
    x = rng.uniform(h * 1.8, size - h * 1.8)
    lead = int(rng.integers(4, 8))
    start = rng.uniform(0, floor * 0.4)

    def centre(k):
        s = min(1.0, (k - (f - lead)) / lead)
        return x, start + (floor - start) * s * s

    dust = np.full(3, rng.uniform(200, 245))
    return [Sprite("rect", _workshop_colour(rng, 60, 255), h, h * rng.uniform(0.6, 1.0), f - lead,
                   f + int(rng.integers(8, 20)), centre),
            Sprite("rect", dust, h * 1.8, h * 0.5, f, f + 2, _still(x, floor + h * 0.8))]


def _arm(rng, n_frames: int, size: int) -> Sprite:
    """A silent arm swinging back and forth the whole clip (a periodic motion with no sound)."""
    half = size * rng.uniform(0.03, 0.06)
    cx, cy = rng.uniform(0.2, 0.8, 2) * size
    reach = size * rng.uniform(0.1, 0.25)
    period = rng.uniform(0.8, 2.5) * VIDEO_FPS
    phase = rng.uniform(0, 2 * np.pi)
    horizontal = rng.random() < 0.5

    def centre(k):
        d = reach * math.sin(2 * math.pi * k / period + phase)
        return (cx + d, cy) if horizontal else (cx, cy + d)

    return Sprite("rect", _workshop_colour(rng, 0, 255), half, half * 2.5, 0, n_frames - 1, centre)


def _workshop_sound(rng, kind: str, peak: float) -> np.ndarray:
    """A ring (lamp: inharmonic partials, 0.15-0.3 s), a thud (press: 60-180 Hz, 0.1-0.2 s) or a knock (drop:
    band-passed noise with a low body, 0.05-0.1 s)."""
    if kind == "lamp":
        n = int(rng.uniform(0.15, 0.3) * AUDIO_SR)
        t = np.arange(n) / AUDIO_SR
        f0 = rng.uniform(500, 1500)
        x = sum(a * np.sin(2 * np.pi * f0 * r * t) for r, a in ((1.0, 1.0), (2.76, 0.5), (5.4, 0.25)))
        x = x * np.exp(-t / (n / AUDIO_SR * 0.3))
    elif kind == "press":
        n = int(rng.uniform(0.1, 0.2) * AUDIO_SR)
        t = np.arange(n) / AUDIO_SR
        x = np.sin(2 * np.pi * rng.uniform(60, 180) * t) * np.exp(-t / (n / AUDIO_SR * 0.35))
        x += 0.3 * rng.normal(0, 1, n) * np.exp(-t / 0.01)
    else:
        n = int(rng.uniform(0.05, 0.1) * AUDIO_SR)
        t = np.arange(n) / AUDIO_SR
        noise = np.diff(rng.normal(0, 1, n + 1))  # high-passed
        x = (noise + 2 * np.sin(2 * np.pi * rng.uniform(200, 400) * t)) * np.exp(-t / (n / AUDIO_SR * 0.2))
    x[-80:] *= np.linspace(1, 0, 80)
    return x * (peak / np.abs(x).max())


def _plan_workshop(seed: int, duration: float, size: int, offset_sec: float, cues: Cues) -> Plan:
    """A clip of style "workshop" (``Cues.style``); ``cues.events`` and ``quiet_sounds`` as for the default, the
    distractors are swinging arms, the noise a machine hum."""
    rng = np.random.default_rng([_non_negative(seed), 3])
    n_frames = round(duration * VIDEO_FPS)
    frames = _event_frames(rng, n_frames, cues.events)
    kinds = [WORKSHOP_KINDS[i] for i in rng.integers(len(WORKSHOP_KINDS), size=len(frames))]
    background = _workshop_floor(rng, size)
    sprites = [_arm(rng, n_frames, size) for _ in range(rng.integers(cues.distractors[0], cues.distractors[1] + 1))]
    actors = []
    for f, kind in zip(frames, kinds):
        sprites += _lamp(rng, f, size, n_frames) if kind == "lamp" else _press(rng, f, size) if kind == "press" \
            else _drop(rng, f, size)
        actors.append(sprites[-1])
    n = n_frames * SAMPLES_PER_FRAME
    t = np.arange(n) / AUDIO_SR
    hum_hz = rng.choice([50.0, 60.0])
    hum = sum(np.sin(2 * np.pi * hum_hz * h * t + rng.uniform(0, 6.3)) / h for h in (1, 2, 3))
    hum *= 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t)  # the machine's own slow rhythm
    audio = hum * (rng.uniform(0.02, 0.06) / hum.std() * cues.noise) + rng.normal(0, 0.005 * cues.noise, n)
    events = [f / VIDEO_FPS for f in frames]
    for ev, kind in zip(events, kinds):
        _add(audio, _workshop_sound(rng, kind, rng.uniform(0.4, 0.8)), ev - offset_sec)
    for start in np.arange(0, duration, STRETCH_SEC):
        count = rng.integers(cues.quiet_sounds[0], cues.quiet_sounds[1] + 1)
        for q in rng.uniform(start, min(start + STRETCH_SEC, duration), count):
            _add(audio, _workshop_sound(rng, WORKSHOP_KINDS[rng.integers(3)], rng.uniform(0.05, 0.15)), q)
    return Plan(events, kinds, actors, n_frames, background, sprites, audio.astype(np.float32))


def _render(plan: Plan, size: int) -> np.ndarray:
    """(T, size, size, 3) uint8 frames; each shape is drawn as a mask over its bounding box only."""
    video = np.repeat(plan.background[None], plan.n_frames, axis=0)
    coords = np.arange(size) + 0.5  # pixel centres
    for sp in plan.sprites:
        for k in range(max(sp.first, 0), min(sp.last, plan.n_frames - 1) + 1):
            cx, cy = sp.centre(k)
            x0, x1 = max(0, int(cx - sp.hx)), min(size, int(cx + sp.hx) + 2)
            y0, y1 = max(0, int(cy - sp.hy)), min(size, int(cy + sp.hy) + 2)
            if x0 >= x1 or y0 >= y1:
                continue
            dx, dy = coords[x0:x1][None, :] - cx, coords[y0:y1][:, None] - cy
            if sp.shape == "circle":
                mask = dx * dx + dy * dy <= sp.hx * sp.hx
            else:
                mask = (np.abs(dx) <= sp.hx) & (np.abs(dy) <= sp.hy)
            video[k, y0:y1, x0:x1][mask] = sp.colour
    return np.round(video).astype(np.uint8)


def _encode(path: str, video: np.ndarray, audio: np.ndarray) -> None:
    with av.open(ffmpeg_name(path), "w") as out:  # (a colon in the name is no protocol)
        vs = out.add_stream("libx264", rate=VIDEO_FPS)
        vs.width = vs.height = video.shape[1]
        vs.pix_fmt = "yuv420p"
        # mbtree off: with it this x264 gives different bytes from run to run, and a clip must be a function of
        # its seed. One thread: the frames are tiny, and synth() runs clips in parallel processes instead.
        vs.options = {"preset": "veryfast", "crf": "23", "threads": "1", "x264-params": "mbtree=0"}
        as_ = out.add_stream("aac", rate=AUDIO_SR, layout="mono")
        for k, img in enumerate(video):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, VIDEO_FPS)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        # float samples converted to the encoder's sample format, in frames of the encoder's size
        resampler = av.AudioResampler(format=as_.codec_context.codec.audio_formats[0].name, layout="mono",
                                      rate=AUDIO_SR, frame_size=as_.codec_context.frame_size or 1024)
        frame = av.AudioFrame.from_ndarray(np.clip(audio, -1, 1)[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = AUDIO_SR, 0, Fraction(1, AUDIO_SR)
        for f in resampler.resample(frame) + resampler.resample(None):
            out.mux(as_.encode(f))
        out.mux(as_.encode(None))


def sparse_clip_arrays(seed: int, duration: float = 10.0, size: int = 96, offset_sec: float = 0.0,
                       cues: Cues = Cues()) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """The clip ``make_sparse_clip`` writes, as arrays: ``(frames (T, size, size, 3) uint8 at 25 fps, 16 kHz mono
    float32 sound, event times)``, for callers that encode it their own way (a test's live stream)."""
    plan = _plan(seed, duration, size, offset_sec, cues)
    return _render(plan, size), plan.audio, list(plan.events)


def make_sparse_clip(path: str | os.PathLike, seed: int, duration: float = 10.0, size: int = 96,
                     offset_sec: float = 0.0, cues: Cues = Cues()) -> dict:
    """Write one clip (H.264 + AAC mp4, 25 fps, ``size`` x ``size``, 16 kHz mono) made from ``seed``.

    ``offset_sec > 0``: the audio leads, each event's sound starts ``offset_sec`` before its picture. Returns
    ``{"events": [s, ...], "kinds": ["flash" | "hit" | "bounce", ...], "offset_sec": offset_sec}``; event times
    are on the frame grid (the event's frame is ``round(t * 25)``).
    """
    path = Path(path)
    if path.exists():
        raise SynchformerError(path, "already exists; a synthetic clip never overwrites a file")
    if duration < CROP_SEC:
        raise SynchformerError(path, f"duration must be at least {CROP_SEC} s, got {duration}")
    plan = _plan(seed, duration, size, offset_sec, cues)
    video = _render(plan, size)
    write_atomic(path, lambda tmp: _encode(tmp, video, plan.audio))
    return {"events": plan.events, "kinds": plan.kinds, "offset_sec": offset_sec}


def clip_seed(seed: int, i: int) -> int:
    return seed * 1_000_003 + i


def _non_negative(seed: int) -> int:
    """numpy takes any seed >= 0, however large; a negative one is taken as its 64-bit two's complement (as
    torch takes it), so that every seed a user can type makes clips."""
    return seed % (1 << 64) if seed < 0 else seed


def crop_row(seed: int, duration: float) -> tuple[float, float]:
    """(offset_sec, vstart_sec) of a clip: an offset from the 21 classes that lets both 5 s crops fit in the
    clip (in clips shorter than 9 s only the small ones do), and a video start on the frame grid."""
    rng = np.random.default_rng([_non_negative(seed), 1])  # a stream of its own: the clip's content does not move it
    grid = np.round(np.linspace(-MAX_OFFSET_SEC, MAX_OFFSET_SEC, N_OFFSET_CLASSES), 2)
    offset = float(rng.choice(grid[np.abs(grid) <= duration - CROP_SEC + 1e-9]))
    lo, hi = max(0.0, -offset), duration - CROP_SEC - max(0.0, offset)
    frame = max(math.floor(rng.uniform(lo, hi) * VIDEO_FPS + 1e-9), round(lo * VIDEO_FPS))
    vstart = round(frame / VIDEO_FPS, 2)
    if int(vstart * VIDEO_FPS) != frame:  # readers take int(vstart * 25), as the reference does: 1.16 s gives
        vstart = round(vstart + 1e-4, 4)  # frame 28 (28.999...), so write 1.1601 s, which gives frame 29
    return offset, vstart


CONTINUOUS_MAX_SEC = 1.5  # synth --offsets continuous: offsets drawn uniformly from +-this, in the files


def continuous_offset(seed: int) -> float:
    """The offset written into clip ``seed``'s file by ``--offsets continuous``: uniform in +-1.5 s, to 0.1 ms."""
    return round(float(np.random.default_rng([_non_negative(seed), 2]).uniform(-CONTINUOUS_MAX_SEC, CONTINUOUS_MAX_SEC)), 4)


def _make_one(job: tuple[int, str, int, float, int, Cues, float]) -> tuple[int, dict]:
    i, path, seed, duration, size, cues, offset = job
    return i, make_sparse_clip(path, seed, duration, size, offset_sec=offset, cues=cues)


def in_file_offsets(csv_path: str | os.PathLike) -> dict[str, float] | None:
    """{video path: offset} of a clips.csv from ``synth --offsets continuous`` (column ``in_file``: the offset
    is in the file itself, the truth for ``predict``), or None for any other CSV or a folder."""
    csv_path = Path(csv_path)
    if not csv_path.is_file() or csv_path.suffix.lower() != ".csv":
        return None
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "in_file" not in rows[0]:
        return None
    out = {}
    for row in rows:
        p = Path(row["path"])
        out[str(p if p.is_absolute() else csv_path.parent / p)] = float(row["offset_sec"])
    return out


def synth(out_dir: str | os.PathLike, n: int, seed: int = 0, duration: float = 10.0, size: int = 96,
          workers: int = 1, progress: bool = True, cues: Cues = Cues(), offsets: str = "classes") -> Path:
    """Write ``n`` in-sync clips ``clip_00000.mp4``... into ``out_dir`` (clip i from seed
    ``seed * 1_000_003 + i``), ``clips.csv`` (path, offset_sec, vstart_sec: the crops an evaluation takes),
    ``events.jsonl`` (each clip's event times and kinds) and ``synth.json`` (these arguments).

    ``offsets="continuous"``: each clip's file is written out of sync instead, by an offset drawn uniformly
    from +-1.5 s (``continuous_offset``), and clips.csv is ``path,offset_sec,in_file``: the truth for
    ``predict`` and for ``eval``, which then measures in ms (the sub-class offset; not for training).

    A folder made with the same arguments is resumed: only missing clips are made. Returns the CSV's path.
    """
    out_dir = Path(out_dir)
    if offsets not in ("classes", "continuous"):
        raise ValueError(f"offsets must be 'classes' or 'continuous', not {offsets!r}")
    continuous = offsets == "continuous"
    args = {"n": n, "seed": seed, "duration": float(duration), "size": size, "version": VERSION}
    if continuous:  # a class-offset folder's synth.json stays as it was
        args["offsets"] = offsets
    changed = cues.changed()
    if changed:  # a benchmark folder's synth.json stays as it was
        args["cues"] = {k: list(v) if isinstance(v, tuple) else v for k, v in changed.items()}
    if duration < CROP_SEC:
        raise SynchformerError(out_dir, f"duration must be at least {CROP_SEC} s (the evaluation crop), "
                                        f"got {duration}")
    if n < 1 or seed < 0 or size < 16 or workers < 1:
        raise SynchformerError(out_dir, f"need n >= 1, seed >= 0, size >= 16, workers >= 1; got n={n}, "
                                        f"seed={seed}, size={size}, workers={workers}")
    out_dir.mkdir(parents=True, exist_ok=True)
    meta, csv_path, events_path = out_dir / "synth.json", out_dir / "clips.csv", out_dir / "events.jsonl"
    if meta.exists():
        if json.loads(meta.read_text()) != args:
            raise SynchformerError(out_dir, f"was made with other arguments ({meta.read_text().strip()}); "
                                            "choose another folder")
    elif csv_path.exists() or events_path.exists() or any(out_dir.glob("clip_*.mp4")):
        raise SynchformerError(out_dir, "holds clips that synth did not make here (no synth.json); "
                                        "choose another folder")
    else:
        write_atomic(meta, lambda tmp: Path(tmp).write_text(json.dumps(args) + "\n"))

    names = [f"clip_{i:05d}.mp4" for i in range(n)]
    jobs = [(i, str(out_dir / name), clip_seed(seed, i), duration, size, cues,
             continuous_offset(clip_seed(seed, i)) if continuous else 0.0)
            for i, name in enumerate(names) if not (out_dir / name).exists()]
    made = {}
    if jobs:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="synth", unit="clip", disable=not progress)
        if workers > 1:
            with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
                for i, info in pool.imap_unordered(_make_one, jobs):
                    made[i] = info
                    bar.update()
        else:
            for job in jobs:
                i, made[i] = _make_one(job)
                bar.update()
        bar.close()

    if not events_path.exists():
        lines = []
        for i, name in enumerate(names):
            # clips made by an earlier, interrupted run: their plan gives the events without decoding them
            info = made.get(i) or vars(_plan(clip_seed(seed, i), duration, size,
                                             continuous_offset(clip_seed(seed, i)) if continuous else 0.0, cues))
            lines.append(json.dumps({"path": name, "events": info["events"], "kinds": info["kinds"]}))
        write_atomic(events_path, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
    if not csv_path.exists():
        def write_csv(tmp):
            with open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                if continuous:
                    w.writerow(["path", "offset_sec", "in_file"])
                    for i, name in enumerate(names):
                        w.writerow([name, continuous_offset(clip_seed(seed, i)), 1])
                    return
                w.writerow(["path", "offset_sec", "vstart_sec"])
                for i, name in enumerate(names):
                    w.writerow([name, *crop_row(clip_seed(seed, i), duration)])
        write_atomic(csv_path, write_csv)
    return csv_path


def event_times(folder: str | os.PathLike) -> dict[str, list[float]]:
    """Each clip's event times (seconds) from the ``events.jsonl`` that ``synth`` wrote in ``folder``."""
    rows = (json.loads(line) for line in (Path(folder) / "events.jsonl").read_text().splitlines())
    return {row["path"]: row["events"] for row in rows}


def ceiling_of(data: str | os.PathLike, n_segments: int, windows: dict | None = None) -> dict | None:
    """``ceiling`` of ``data`` when it is a CSV made by ``synth`` (events.jsonl beside it, every clip in it),
    for windows of ``n_segments`` segments (``windows``: see ``ceiling``); None for other data."""
    from synchformer.features.segments import span_frames

    path = Path(data)
    if path.suffix.lower() != ".csv" or not (path.parent / "events.jsonl").is_file():
        return None
    try:
        return ceiling(path, window_sec=span_frames(n_segments) / VIDEO_FPS, windows=windows)
    except (SynchformerError, KeyError, ValueError):  # a CSV of other clips beside a synth folder's events
        return None


def ceiling(csv_path: str | os.PathLike, window_sec: float | None = None, lead_sec: float | None = None,
            margin_sec: float = 0.0, windows: dict[str, list[float]] | None = None) -> dict:
    """The best Acc@1 and Acc@1 +-1 any model can reach on a synth folder's fixed-offset windows.

    The only sync evidence is the events: a model that finds every event exactly (picture and sound) still
    cannot tell apart the offsets under which the events it sees in the video window and in the audio
    window agree, so it guesses among them (uniform prior, as the offsets are drawn). An event counts as seen
    in a window it falls in; ``margin_sec`` widens the video window by that much on both sides (a ball's
    approach or rest hints at an event just outside it), which gives an upper bound. ``windows``: for a clip
    scored by pooling several windows (``eval --pool``), the ``vstart_sec`` of each, by the clip's path as
    ``read_clip_list`` resolves it; an offset must then agree with the events of every one of them.

    Returns ``{"accuracy_1", "accuracy_1_tol1", "unique", "clips"}``; ``unique`` is the share of windows
    whose events allow one offset only.
    """
    from synchformer.constants import WINDOW_SEC
    from synchformer.features.segments import LEAD_FRAMES

    csv_path = Path(csv_path)
    window_sec = WINDOW_SEC if window_sec is None else window_sec
    lead_sec = LEAD_FRAMES / VIDEO_FPS if lead_sec is None else lead_sec
    events_path = csv_path.parent / "events.jsonl"
    if not events_path.is_file():
        raise SynchformerError(csv_path, "has no events.jsonl beside it (not a folder made by synchformer synth)")
    events = {name: np.asarray(times, dtype=np.float64) for name, times in event_times(csv_path.parent).items()}
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    # in samples, with the windows cut exactly as SyncDataset.place cuts them (int() of float seconds, as
    # the reference does: a CSV's 1.16 s starts the video at frame 28, 0.04 s early; synth writes 1.1601)
    grid = np.round(np.linspace(-MAX_OFFSET_SEC, MAX_OFFSET_SEC, N_OFFSET_CLASSES) * AUDIO_SR)
    win, margin = round(window_sec * AUDIO_SR), round(margin_sec * AUDIO_SR)
    lead_frames = round(lead_sec * VIDEO_FPS)
    tol = SAMPLES_PER_FRAME  # an event may sit up to a frame from its sound; older CSVs start a frame early
    acc, acc_pm1, unique = [], [], []

    def allowed(ev: np.ndarray, vstart: float, offset: float) -> np.ndarray:
        """(K,) which offsets the events seen in the window at ``vstart`` agree with."""
        v0 = (int(vstart * VIDEO_FPS) + lead_frames) * SAMPLES_PER_FRAME
        a0 = int((vstart + offset) * AUDIO_SR) + lead_frames * SAMPLES_PER_FRAME
        seen_v = ev[(ev >= v0 - margin) & (ev < v0 + win + margin)] - v0
        seen_a = ev[(ev >= a0) & (ev < a0 + win)] - a0

        def agrees(o: float) -> bool:
            # under offset o, an event at video time t sounds at audio time t - o; events within tol of a
            # window's edge may fall either side of it and prove nothing
            return (all(np.any(np.abs(seen_a - (t - o)) <= tol) for t in seen_v if tol <= t - o < win - tol)
                    and all(np.any(np.abs(seen_v - (t + o)) <= tol) for t in seen_a
                            if tol - margin <= t + o < win + margin - tol))

        return np.array([agrees(o) for o in grid])

    for row in rows:
        if row.get("path") not in events:
            raise SynchformerError(csv_path, f"lists {row.get('path')!r}, which events.jsonl does not")
        offset = round(float(row["offset_sec"]), 2)
        ev = np.round(events[row["path"]] * AUDIO_SR)
        path = Path(row["path"])
        vstarts = (windows or {}).get(str(path if path.is_absolute() else csv_path.parent / path))
        ok = np.logical_and.reduce([allowed(ev, v, offset) for v in (vstarts or [float(row["vstart_sec"])])])
        k = int(ok.sum())  # >= 1: the true offset agrees
        near = [int(ok[max(0, i - 1):i + 2].sum()) for i in range(len(grid))]
        acc.append(1 / k)
        acc_pm1.append(max(near) / k)  # the guess whose +-1 neighbourhood holds the most agreeing offsets
        unique.append(k == 1)
    return {"accuracy_1": float(np.mean(acc)), "accuracy_1_tol1": float(np.mean(acc_pm1)),
            "unique": float(np.mean(unique)), "clips": len(rows)}
