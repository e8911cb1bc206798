"""Broadcast tolerances: parsed from --tolerance, judged at their edges with the package's sign (positive: the sound
leads), and used by predict (in_tolerance, --check's exit codes), fix (what it leaves alone) and score (rows)."""

from __future__ import annotations

import json

import pytest

import synchformer
from synchformer.cli import main
from synchformer.cli.predict import check_code
from synchformer.inference.tolerance import Tolerance
from synchformer.training.synth import make_sparse_clip

# name: (lead ms, lag ms), as the standards say: sound ahead by up to lead, behind by up to lag
WINDOWS = {"bt1359": (45, 125), "bt1359-acceptable": (90, 185), "ebu-r37": (40, 60), "atsc": (15, 45)}


@pytest.mark.parametrize("name", WINDOWS)
def test_each_standard_holds_its_edges_and_not_a_ms_more(name):
    lead, lag = WINDOWS[name]
    t = Tolerance.parse(name.upper())
    assert t.to_dict() == {"name": name, "lead_ms": lead, "lag_ms": lag}
    assert t.contains(lead / 1000) and not t.contains((lead + 1) / 1000)  # sound early
    assert t.contains(-lag / 1000) and not t.contains(-(lag + 1) / 1000)  # sound late
    assert t.contains_interval(-lag / 1000, lead / 1000) and not t.contains_interval(-lag / 1000, (lead + 1) / 1000)


def test_bt1359_is_the_packages_window():
    from synchformer.constants import BT1359_SEC

    t = Tolerance.parse("bt1359")
    assert t.contains(0.045) and not t.contains(0.046) and t.contains(-0.125) and not t.contains(-0.126)
    assert (-t.lag_ms / 1000, t.lead_ms / 1000) == BT1359_SEC


def test_lead_lag_in_ms():
    t = Tolerance.parse(" 40,60 ")
    assert t.to_dict() == {"name": "40,60", "lead_ms": 40, "lag_ms": 60}
    assert t.contains(0.04) and not t.contains(0.041) and t.contains(-0.06) and not t.contains(-0.061)
    assert Tolerance.parse("12.5,0").to_dict() == {"name": "12.5,0", "lead_ms": 12.5, "lag_ms": 0}
    for bad in ("bt601", "40", "40,60,80", "-1,60", "40,-0.5", "nan,60", "40,inf", "a,b", ""):
        with pytest.raises(ValueError, match="expected"):
            Tolerance.parse(bad)


@pytest.mark.parametrize("command", [["predict", "V"], ["fix", "V", "-o", "O.mp4"], ["score", "V", "-o", "O.csv"]])
@pytest.mark.parametrize("bad", ["bt1358", "40;60", "-40,60"])
def test_a_bad_tolerance_is_one_line_naming_the_option(tmp_path, capsys, command, bad):
    argv = [str(tmp_path / a) if a in ("V", "O.mp4", "O.csv") else a for a in command]
    with pytest.raises(SystemExit) as exit_:
        main(argv + [f"--tolerance={bad}"])  # "=": argparse reads a lone "-40,60" as an option
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"synchformer {command[0]}: error: argument --tolerance: expected bt1359") and bad in last


def test_check_puts_an_offset_out_of_tolerance_before_an_unreliable_one():
    inside = {"reliable": True, "in_tolerance": True}
    outside = {"reliable": True, "in_tolerance": False}
    unsure = {"reliable": False, "in_tolerance": False}  # out, but not trusted: unreliable, not out of tolerance
    none = {"reliable": False, "in_tolerance": None}
    assert check_code([inside, inside]) == 0 and check_code([]) == 0
    assert check_code([inside, outside]) == 3 and check_code([unsure, outside, none]) == 3
    assert check_code([inside, unsure]) == 4 and check_code([none]) == 4


# ------------------------------------------------------------------------------------------------ on clips

@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tolerance")
    synced, late = folder / "synced.mp4", folder / "late.mp4"
    make_sparse_clip(synced, 5, duration=12.0, offset_sec=0.0)
    make_sparse_clip(late, 21, duration=12.0, offset_sec=-0.4)  # the sound 400 ms behind the pictures
    return synced, late


def _predict(capsys, *argv) -> tuple[int, list[dict]]:
    code = main(["predict", *map(str, argv), "-w", "bundled", "--json"])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_predict_says_in_or_out_of_tolerance_and_check_exits_with_it(clips, capsys):
    synced, late = clips
    code, (a, b) = _predict(capsys, synced, late, "--check")
    assert code == 3  # one reliable result outside BT.1359
    assert a["tolerance"] == b["tolerance"] == {"name": "bt1359", "lead_ms": 45, "lag_ms": 125}
    assert a["reliable"] and a["in_tolerance"] is True and abs(a["refined_offset_sec"]) <= 0.045
    assert b["reliable"] and b["in_tolerance"] is False and b["refined_offset_sec"] == pytest.approx(-0.4, abs=0.1)
    code, (b,) = _predict(capsys, late, "--check", "--tolerance", "100,500")
    assert code == 0 and b["in_tolerance"] is True and b["tolerance"]["name"] == "100,500"
    code, (a,) = _predict(capsys, synced, "--check", "--min-sync-prob", "1")  # every window gated out
    assert code == 4 and not a["reliable"]


def test_predict_text_names_the_tolerance(clips, capsys):
    assert main(["predict", str(clips[1]), "-w", "bundled", "--tolerance", "ebu-r37"]) == 0  # no --check: 0
    assert "OUT OF TOLERANCE: refined offset outside EBU R37's -60..+40 ms" in capsys.readouterr().out


def test_the_library_judges_as_the_command(clips):
    p = synchformer.predict(clips[1], weights="bundled", tolerance="atsc")
    assert p.in_tolerance is False and p.to_dict()["tolerance"]["name"] == "atsc"
    assert synchformer.decide_fix(p).action == "shift"  # outside BT.1359, the default
    wide = synchformer.decide_fix(p, tolerance=Tolerance.parse("500,500"))
    assert wide.action == "leave" and "inside the tolerance -500..+500 ms" in wide.why
    with pytest.raises(ValueError, match="expected"):
        synchformer.predict(clips[1], weights="bundled", tolerance="loose")


def test_fix_leaves_alone_what_is_inside_a_wide_tolerance(clips, tmp_path, capsys):
    out = tmp_path / "fixed.mp4"
    assert main(["fix", str(clips[1]), "-o", str(out), "-w", "bundled", "--tolerance", "500,500"]) == 0
    said = capsys.readouterr().out
    assert "in sync" in said and "-500..+500 ms" in said and "nothing written" in said and not out.exists()
    assert main(["fix", str(clips[1]), "-o", str(out), "-w", "bundled"]) == 0  # BT.1359: moved
    assert out.exists() and "audio delayed" not in capsys.readouterr().out  # the sound is late: advanced


def test_score_rows_say_in_tolerance_and_a_resume_keeps_the_tolerance(clips, tmp_path, capsys):
    out = tmp_path / "rows.jsonl"
    argv = ["score", *map(str, clips), "-o", str(out), "--metric", "offset", "-w", "bundled", "--no-progress"]
    assert main(argv + ["--tolerance", "atsc"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["tolerance"] for r in rows] == ["atsc", "atsc"]
    assert [r["in_tolerance"] for r in rows] == [True, False]
    capsys.readouterr()
    assert main(argv) == 2  # bt1359 onto rows judged by ATSC: refused, the file untouched
    assert "--tolerance atsc" in capsys.readouterr().err and len(out.read_text().splitlines()) == 2
