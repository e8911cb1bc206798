"""``synchformer synth OUT_DIR [--n 200]``: write the synthetic sparse-cue benchmark."""

from __future__ import annotations

from synchformer.cli.common import float_at_least, int_at_least, positive_int, random_seed


def add_parser(sub):
    p = sub.add_parser(
        "synth", help="write a synthetic sparse-cue benchmark: in-sync clips whose only sync evidence is 1-4 "
        "brief events per 5 s (a shape flashes, a ball hits an edge or bounces off a bar, exactly as a short "
        "tone, noise burst or click train plays), among shapes that move silently and background noise with "
        "quiet sounds that nothing on screen makes; clips.csv gives each clip an offset and crop to evaluate on",
        description="Write clip_00000.mp4 ... (H.264 + AAC, 25 fps, square, 16 kHz mono; all in sync), "
        "clips.csv (path, offset_sec, vstart_sec: an evaluation crops 5 s of video from vstart_sec and 5 s of "
        "audio from vstart_sec + offset_sec), events.jsonl (each clip's event times and kinds) and synth.json. "
        "Running again with the same arguments makes only the clips that are missing.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="the folder to write (created if needed)")
    p.add_argument("--n", type=positive_int, default=200, help="how many clips (default: 200)")
    p.add_argument("--seed", type=random_seed, default=0, help="clip i is made from seed * 1000003 + i, so the "
                   "same seed makes the same clips (default: 0)")
    p.add_argument("--duration", type=float_at_least(5), default=10.0, metavar="SEC",
                   help="clip length, >= 5 (default: 10)")
    p.add_argument("--size", type=int_at_least(16), default=96, metavar="PX",
                   help="frame side in pixels, >= 16 (default: 96)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="K",
                   help="processes making clips (default: 1; more is faster on more cores)")
    p.add_argument("--offsets", choices=("classes", "continuous"), default="classes",
                   help="classes (default): in-sync files, clips.csv gives each an offset from the 21 classes to "
                        "crop at; continuous: each file is written out of sync by an offset drawn uniformly from "
                        "+-1.5 s, clips.csv (path,offset_sec,in_file) holds the truth, for predict and eval to be "
                        "measured in ms")
    p.add_argument("--style", choices=("default", "workshop"), default="default",
                   help="what the clips look and sound like: default (the benchmark: flashes, balls and bars on dark "
                        "gradients, tones, bursts and clicks); workshop (another domain, to try `synchformer adapt` "
                        "on: lamps that light with a ring, presses that strike an anvil with sparks and a thud, boxes "
                        "that land with a puff of dust and a knock, on a striped grey floor, with silently swinging "
                        "arms and a machine hum; each kind always makes its own sound)")
    easier = p.add_argument_group("difficulty (an easier set is a curriculum for training from scratch)")
    easier.add_argument("--events", type=_range(1), default=(1, 4), metavar="LO,HI",
                        help="events per 5 s stretch (default: 1,4)")
    easier.add_argument("--distractors", type=_range(0), default=(1, 3), metavar="LO,HI",
                        help="silent moving shapes per clip (default: 1,3)")
    easier.add_argument("--quiet-sounds", type=_range(0), default=(0, 3), metavar="LO,HI",
                        help="quiet sounds without a picture per 5 s stretch (default: 0,3)")
    easier.add_argument("--no-noise", action="store_true", help="no background noise")
    easier.add_argument("--linked-sounds", action="store_true",
                        help="each event kind makes its own sound (flash: tone, hit: noise burst, bounce: click "
                        "train); by default any event makes any of the three")
    return p


def _range(lo_min: int):
    """LO,HI: two whole numbers, lo_min <= LO <= HI."""

    def parse(text: str) -> tuple[int, int]:
        import argparse

        try:
            lo, hi = (int(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected LO,HI (two whole numbers), got {text!r}") from None
        if not lo_min <= lo <= hi:
            raise argparse.ArgumentTypeError(f"expected LO,HI with {lo_min} <= LO <= HI, got {text!r}")
        return lo, hi

    return parse


def run(args) -> int:
    from synchformer.errors import SynchformerError
    from synchformer.io.outputs import check_output_folder

    check_output_folder(args.out_dir)  # before any clip is made
    from synchformer.training.synth import Cues, synth

    try:
        cues = Cues(args.events, args.distractors, args.quiet_sounds, not args.no_noise, args.linked_sounds,
                    args.style)
    except ValueError as e:
        raise SynchformerError(args.out_dir, str(e)) from None
    csv_path = synth(args.out_dir, args.n, seed=args.seed, duration=args.duration, size=args.size,
                     workers=args.workers, cues=cues, offsets=args.offsets)
    print(f"{args.n} clips of {args.duration:g} s in {args.out_dir}; offsets and crops: {csv_path}")
    return 0
