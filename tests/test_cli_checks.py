"""The command line checks what it is given before any work: option values while it reads them, outputs (a folder
that exists and can be written, the library a figure needs) before a model loads; a failure is one line and exit
code 2, a failed write leaves what was written valid, and the help texts speak to the person running the command."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import synchformer.cli.features as features_cli
import synchformer.inference.predict as predict_mod
from synchformer.cli import build_parser, main
from synthetic import make_clip

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Clips of 6 s (two) and 20 s, and one too short to hold a window (3 s)."""
    d = tmp_path_factory.mktemp("clips")
    make_clip(d / "a", 0.4, duration=6.0, size=(48, 32))
    make_clip(d / "b", -0.2, duration=6.0, seed=1, size=(48, 32))
    make_clip(d / "long", -0.2, duration=20.0, seed=2, size=(48, 32))
    make_clip(d / "short", 0.4, duration=3.0, size=(48, 32))
    return d


def _no_model(*args, **kwargs):
    pytest.fail("the model was loaded")


# ------------------------------------------------------------------------------------------------ option values

BAD_VALUES = [  # (command line, the option argparse must name); V: a video, D: data, O: an output
    (["predict", "V", "--hop", "0"], "--hop"),
    (["predict", "V", "--hop", "-1"], "--hop"),
    (["predict", "V", "--hop", "nan"], "--hop"),
    (["predict", "V", "--hop", "inf"], "--hop"),
    (["predict", "V", "--start", "-1"], "--start"),
    (["predict", "V", "--start", "nan"], "--start"),
    (["predict", "V", "--workers", "-1"], "--workers"),
    (["predict", "V", "--batch-size", "0"], "--batch-size"),
    (["predict", "V", "--min-sync-prob", "1.5"], "--min-sync-prob"),
    (["predict", "V", "--min-sync-prob", "nan"], "--min-sync-prob"),
    (["fix", "V", "-o", "O.mp4", "--min-confidence", "nan"], "--min-confidence"),
    (["fix", "V", "-o", "O.mp4", "--min-confidence", "2"], "--min-confidence"),
    (["fix", "V", "-o", "O.mp4", "--offset", "inf"], "--offset"),
    (["fix", "V", "-o", "O.mp4", "--offset", "nan"], "--offset"),
    (["fix", "V", "-o", "O.mp4", "--hop", "0"], "--hop"),
    (["score", "V", "-o", "O.csv", "--duration", "inf"], "--duration"),
    (["score", "V", "-o", "O.csv", "--duration", "0"], "--duration"),
    (["score", "V", "-o", "O.csv", "--hop", "nan"], "--hop"),
    (["score", "V", "-o", "O.csv", "--workers", "-2"], "--workers"),
    (["score", "V", "-o", "O.csv", "--batch-size", "0"], "--batch-size"),
    (["features", "V", "-o", "O.npy", "--size", "0"], "--size"),
    (["explain", "V", "--start", "inf"], "--start"),
    (["explain", "V", "--target", "nan"], "--target"),
    (["eval", "D", "--hop", "-1"], "--hop"),
    (["eval", "D", "--batch-size", "0"], "--batch-size"),
    (["eval", "D", "--workers", "0"], "--workers"),
    (["eval", "D", "--seed", "1e3"], "--seed"),
    (["synth", "O", "--n", "0"], "--n"),
    (["synth", "O", "--duration", "inf"], "--duration"),
    (["synth", "O", "--duration", "4"], "--duration"),
    (["synth", "O", "--seed", "x"], "--seed"),
    (["synth", "O", "--size", "8"], "--size"),
    (["synth", "O", "--workers", "0"], "--workers"),
    (["synth", "O", "--events", "0,2"], "--events"),
    (["synth", "O", "--quiet-sounds", "3,1"], "--quiet-sounds"),
    (["demo", "--offset", "nan"], "--offset"),
    (["demo", "--seed", "0.5"], "--seed"),
]


@pytest.mark.parametrize("argv,option", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_a_bad_option_value_is_refused_while_the_command_line_is_read(tmp_path, capsys, argv, option):
    """argparse itself refuses it: usage and one error line naming the option, exit code 2, before the inputs
    (here missing, which would be the error if they were looked at first) or any model."""
    argv = [str(tmp_path / a) if a in ("V", "D", "O", "O.mp4", "O.csv", "O.npy") else a for a in argv]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: synchformer ") and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"synchformer {argv[0]}: error: argument {option}") and "expected" in last, err
    assert not (tmp_path / "O").exists()


def test_good_option_values_are_read_as_numbers():
    p = build_parser()
    a = p.parse_args(["predict", "v.mp4", "--hop", "0.32", "--start", "0", "--workers", "0", "--batch-size", "1",
                      "--min-sync-prob", "0"])
    assert (a.hop, a.start, a.workers, a.batch_size, a.min_sync_prob) == (0.32, 0.0, 0, 1, 0.0)
    a = p.parse_args(["fix", "v.mp4", "-o", "o.mp4", "--offset", "-0.5", "--min-confidence", "1"])
    assert (a.offset, a.min_confidence) == (-0.5, 1.0)
    a = p.parse_args(["score", "v.mp4", "-o", "o.csv", "--duration", "8", "--hop", "1e0"])
    assert (a.duration, a.hop) == (8.0, 1.0)
    a = p.parse_args(["synth", "out", "--n", "1", "--duration", "5", "--seed", "0", "--size", "16"])
    assert (a.n, a.duration, a.seed, a.size) == (1, 5.0, 0, 16)
    assert p.parse_args(["explain", "v.mp4", "--target", "-0.4"]).target == -0.4
    assert p.parse_args(["features", "v.mp4", "-o", "f.npy", "--size", "256"]).size == 256


def test_validators():
    from synchformer.cli import common

    assert common.positive_float("2.4") == 2.4 and common.non_negative_float("0") == 0.0
    assert common.probability("1") == 1.0 and common.positive_int("3") == 3 and common.non_negative_int("0") == 0
    assert common.finite_float("-1.5") == -1.5 and common.random_seed(str(10 ** 30)) == 10 ** 30
    assert common.random_seed("-1") == -1  # every seed a user can type makes clips and samples
    assert common.float_at_least(5)("5") == 5.0 and common.int_at_least(224)("256") == 256
    for fn, text in [(common.positive_float, "0"), (common.positive_float, "nan"), (common.positive_float, "-inf"),
                     (common.non_negative_float, "-0.1"), (common.non_negative_float, "inf"),
                     (common.probability, "-0.01"), (common.probability, "nan"), (common.positive_int, "0"),
                     (common.positive_int, "1.5"), (common.non_negative_int, "-1"), (common.finite_float, "inf"),
                     (common.finite_float, "x"), (common.random_seed, "1.5"), (common.random_seed, "x"),
                     (common.float_at_least(5), "4.99"), (common.int_at_least(224), "100")]:
        with pytest.raises(argparse.ArgumentTypeError, match="expected"):
            fn(text)


# ------------------------------------------------------------------------------------------------ version, help


def test_version_is_the_installed_packages(capsys):
    from importlib.metadata import version

    import synchformer

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"synchformer {version('synchformer')}\n"
    assert version("synchformer") == synchformer.__version__  # the metadata and the source tree agree


DEVELOPER_SPEAK = ["offline", "has not yet run", ".ci/run", "../shared", "seeds no training set", "as before",
                   "the reference", "reference's", "in README.md"]


def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_help_texts_speak_to_the_user():
    """Every option says what it does and, where it has one, its default; no developer notes."""
    missing, no_default, speak = [], [], []
    for name, sub in _subparsers().items():
        text = " ".join(sub.format_help().split())
        speak += [f"{name}: {s!r}" for s in DEVELOPER_SPEAK if s in text]
        for a in sub._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            label = f"{name} {'/'.join(a.option_strings) or a.dest}"
            if not a.help:
                missing.append(label)
            elif a.option_strings and a.default not in (None, False) and "default" not in a.help.lower():
                no_default.append(label)
    assert not missing, f"no help: {missing}"
    assert not no_default, f"the default is not said: {no_default}"
    assert not speak, f"written for developers: {speak}"


def test_help_texts_say_what_the_defaults_are():
    subs = _subparsers()

    def help_of(command, option):
        return " ".join(next(a for a in subs[command]._actions if option in a.option_strings).help.split())

    hop = help_of("eval", "--hop")
    assert "default 2.4" in hop and "as predict)" not in hop and "0.64" in hop  # predict's own default is 0.64
    assert "default" in help_of("eval", "--out").lower() and "default 8" in help_of("eval", "--batch-size")
    assert "default 0.5" in help_of("predict", "--min-sync-prob")
    assert "default 0" in help_of("fix", "--min-confidence")
    assert "default: safetensors" in help_of("features", "--format")
    json_help = help_of("predict", "--json")
    assert "README" not in json_help and "synchformer/inference/pooling.py" in json_help
    assert (REPO / "synchformer/inference/pooling.py").read_text().count("synchformer.timeline/1") >= 1


def test_the_readme_speaks_to_the_user():
    text = (REPO / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) < 260
    flat = " ".join(text.split())
    for s in ["has not yet run on a GPU", ".ci/run", "../shared", "seeds no training set", "as the reference",
              "Local paths work as before", "this machine is offline"]:
        assert s not in flat, s
    first = text.split("```bash\n", 1)[1].split("```", 1)[0]  # CI runs these two commands as they are
    assert "pip install torch==2.13.0 -e . && synchformer demo\n" in first
    assert "pip install -e '.[test]' && python -m pytest -q\n" in first


# ------------------------------------------------------------------------------------------------ features


class _FakeModel:
    class cfg:
        v_tokens, timing = 8, "true"


def _fake_features(model, video, *, audio=False, **kw):
    n = 3 if "a" == Path(video).stem else 5
    out = {"vfeats": np.arange(n * 8 * 4, dtype=np.float32).reshape(n * 8, 4),
           "segment_start_sec": np.arange(n) * 0.32}
    if audio:
        out["afeats"] = np.ones((n * 6, 4), np.float32)
    return out


@pytest.fixture
def fast_features(monkeypatch):
    """features with a stand-in for the model and the encoders: the command's own checks and writes, for real."""
    import synchformer.inference.embed as embed

    monkeypatch.setattr(features_cli, "load", lambda *a, **k: _FakeModel())
    monkeypatch.setattr(embed, "extract_features", _fake_features)


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "umask077"])
def test_features_files_get_the_permissions_of_an_ordinary_file(tmp_path, clips, fast_features, umask):
    """safetensors replaced the private temporary file with its own: 0600 under any umask."""
    old = os.umask(umask)
    try:
        assert main(["features", str(clips / "a.mp4"), "-o", str(tmp_path / "a.safetensors"), "--audio"]) == 0
        assert main(["features", str(clips / "a.mp4"), str(clips / "long.mp4"), "--out-dir", str(tmp_path / "d"),
                     "--audio"]) == 0
        assert main(["features", str(clips / "a.mp4"), "--out-dir", str(tmp_path / "n"), "--format", "npy",
                     "--audio"]) == 0
    finally:
        os.umask(old)
    written = [tmp_path / "a.safetensors", tmp_path / "d/a.safetensors", tmp_path / "d/long.safetensors",
               tmp_path / "n/a.npy", tmp_path / "n/a.audio.npy"]
    assert {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in written} == \
        {str(p.relative_to(tmp_path)): oct(0o666 & ~umask) for p in written}
    from safetensors.numpy import load_file

    saved = load_file(tmp_path / "d/long.safetensors")
    assert saved["vfeats"].shape == (40, 4) and saved["afeats"].shape == (30, 4)
    assert sorted(os.listdir(tmp_path / "d")) == ["a.safetensors", "long.safetensors"]  # no temporary file left


def test_features_out_dir_is_created_with_its_parents(tmp_path, clips, fast_features, capsys):
    out = tmp_path / "new" / "deeper"
    assert main(["features", str(clips / "a.mp4"), "--out-dir", str(out)]) == 0
    assert (out / "a.safetensors").is_file()
    assert f"-> {out / 'a.safetensors'}" in capsys.readouterr().out


def test_features_out_dir_that_is_a_file_is_refused_before_the_model_loads(tmp_path, clips, monkeypatch, capsys):
    monkeypatch.setattr(features_cli, "load", _no_model)
    (tmp_path / "f").write_text("mine")
    assert main(["features", str(clips / "a.mp4"), "--out-dir", str(tmp_path / "f")]) == 2
    assert capsys.readouterr().err == f"synchformer: error: {tmp_path / 'f'}: is a file, not a folder\n"
    assert (tmp_path / "f").read_text() == "mine"


def test_features_inputs_with_the_same_name_are_named(tmp_path, clips, monkeypatch, capsys):
    monkeypatch.setattr(features_cli, "load", _no_model)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.mp4").write_bytes((clips / "a.mp4").read_bytes())
    one, two = str(clips / "a.mp4"), str(tmp_path / "x" / "a.mp4")
    assert main(["features", one, two, "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and one in err and two in err and str(tmp_path / "out" / "a.safetensors") in err
    assert not (tmp_path / "out").exists()


def test_a_full_disk_before_the_run_is_one_line(tmp_path, clips, monkeypatch, capsys):
    """No space left where the output goes: said before the model loads."""
    monkeypatch.setattr(features_cli, "load", _no_model)
    monkeypatch.setattr(os, "statvfs", lambda path: os.statvfs_result((4096, 4096, 1000, 0, 0, 100, 0, 0, 0, 255)))
    out = tmp_path / "f.safetensors"
    assert main(["features", str(clips / "a.mp4"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"synchformer: error: {out}: cannot write") and "full" in err and err.count("\n") == 1


def _limited(limit: int, argv: list[str]) -> subprocess.CompletedProcess:
    """The command in a process that cannot write a file beyond ``limit`` bytes (RLIMIT_FSIZE: the write fails
    as on a full disk; Python ignores SIGXFSZ)."""
    code = ("import resource, sys\n"
            "hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), hard))\n"
            "from synchformer.cli import main\n"
            "sys.exit(main(sys.argv[2:]))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code, str(limit), *argv], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_write_that_fails_mid_run_is_one_line_and_what_was_written_stays_valid(tmp_path, clips):
    """The bundled model, for real: the first video's features fit, the second's (20 s) do not."""
    from safetensors.numpy import load_file

    from synchformer.model.bundled import SYNTHETIC_TINY

    out = tmp_path / "feats"
    out.mkdir()
    r = _limited(60_000, ["features", str(clips / "a.mp4"), str(clips / "long.mp4"), "--out-dir", str(out),
                          "-w", str(SYNTHETIC_TINY), "--device", "cpu"])
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"synchformer: error: {out / 'long.safetensors'}: cannot write"), r.stderr
    assert f"-> {out / 'a.safetensors'}" in r.stdout
    assert sorted(os.listdir(out)) == ["a.safetensors"]  # no half-written file, no temporary file
    assert load_file(out / "a.safetensors")["vfeats"].shape == (17 * 8, 48)


# ------------------------------------------------------------------------------------------------ outputs that
# cannot be written: a folder this user cannot write into (root ignores a folder's permissions: the command then
# runs without its capabilities, as any other user would)

CHILD = """\
import os, sys, tempfile
folder, lie = sys.argv[1], sys.argv[2] == "lie"
try:
    fd, probe = tempfile.mkstemp(dir=folder)
except OSError:
    pass
else:
    os.close(fd)
    os.unlink(probe)
    sys.exit(77)  # this user can write there after all
if lie:  # as root on a read-only file system sees it: os.access says yes, only a write says no
    os.access = lambda *a, **k: True
from synchformer.cli import main
code = main(sys.argv[3:])
assert "torch" not in sys.modules, "torch was imported"
sys.exit(code)
"""


def _without_capabilities():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):  # PR_CAPBSET_DROP: root starts the next program with none of them
        libc.prctl(24, cap, 0, 0, 0)


def _run_unprivileged(folder: Path, argv: list[str], lie: bool = False) -> subprocess.CompletedProcess:
    preexec = None
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        if not sys.platform.startswith("linux"):
            pytest.skip("running as root, and only Linux lets this test drop root's power over permissions")
        preexec = _without_capabilities
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", CHILD, str(folder), "lie" if lie else "", *argv], capture_output=True,
                       text=True, env=env, preexec_fn=preexec, timeout=120)
    if r.returncode == 77:
        pytest.skip(f"this OS does not stop this user from writing into a folder of mode 0555 ({folder})")
    return r


UNWRITABLE = {  # command line: R = the read-only folder, V = a video, D = a folder of videos, W = weights
    "features -o": ["features", "V", "-o", "R/f.safetensors", "-w", "W"],
    "features --out-dir": ["features", "V", "--out-dir", "R/new/feats", "-w", "W"],
    "predict --plot": ["predict", "V", "--plot", "R/heat.png", "-w", "W"],
    "explain -o": ["explain", "V", "-o", "R/why.png", "-w", "W"],
    "fix -o": ["fix", "V", "-o", "R/fixed.mp4", "-w", "W"],
    "eval --out": ["eval", "D", "--out", "R/ev", "-w", "W"],
    "synth": ["synth", "R/bench", "--n", "1"],
    "demo --keep": ["demo", "--keep", "R/clip.mp4", "-w", "W"],
}


@pytest.fixture
def read_only(tmp_path, clips):
    folder = tmp_path / "ro"
    folder.mkdir()
    (tmp_path / "big.pt").write_bytes(b"not a checkpoint" * 4096)  # the error, were the weights opened first
    os.chmod(folder, 0o555)
    yield folder
    os.chmod(folder, 0o755)


@pytest.mark.parametrize("case", list(UNWRITABLE))
def test_an_output_that_cannot_be_written_is_one_line_before_any_work(tmp_path, clips, read_only, case):
    subs = {"R": str(read_only), "V": str(clips / "a.mp4"), "D": str(clips), "W": str(tmp_path / "big.pt")}
    argv = [re.sub(r"^[RVDW](?=/|$)", lambda m: subs[m.group()], a) for a in UNWRITABLE[case]]
    r = _run_unprivileged(read_only, argv)
    target = next(a for a in argv if a.startswith(str(read_only)))
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"synchformer: error: {target}: cannot ") and "not writable" in err, err
    assert os.listdir(read_only) == []


@pytest.mark.parametrize("case", ["features -o", "predict --plot"])
def test_a_folder_that_refuses_only_the_write_is_found_before_any_work(tmp_path, clips, read_only, case):
    """os.access can say yes where a write fails (root on a read-only file system): a file is tried too."""
    subs = {"R": str(read_only), "V": str(clips / "a.mp4"), "D": str(clips), "W": str(tmp_path / "big.pt")}
    argv = [re.sub(r"^[RVDW](?=/|$)", lambda m: subs[m.group()], a) for a in UNWRITABLE[case]]
    r = _run_unprivileged(read_only, argv, lie=True)
    target = next(a for a in argv if a.startswith(str(read_only)))
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"synchformer: error: {target}: cannot write"), err
    assert "permission denied" in err and os.listdir(read_only) == []


@pytest.mark.parametrize("command", [["predict", "V", "--plot", "O/heat.png"], ["explain", "V", "-o", "O/why.png"]])
def test_a_figure_without_matplotlib_is_one_line_before_any_work(tmp_path, clips, monkeypatch, capsys, command):
    """predict --plot ran the whole analysis, printed nothing, then failed."""
    import synchformer.cli.explain as explain_cli

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # an import of it fails, as where it is not installed
    monkeypatch.setattr(predict_mod, "load_weights", _no_model)
    monkeypatch.setattr(explain_cli, "load", _no_model)
    argv = [str(clips / "a.mp4") if a == "V" else a.replace("O/", f"{tmp_path}/") for a in command]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("synchformer: error: ") and "needs matplotlib" in captured.err
    assert os.listdir(tmp_path) == []


def test_predict_plot_names_that_collide_are_refused_before_any_work(tmp_path, clips, monkeypatch, capsys):
    """Two videos of the same name would write one heat map over the other."""
    monkeypatch.setattr(predict_mod, "load_weights", _no_model)
    (tmp_path / "x").mkdir()
    other = tmp_path / "x" / "a.mp4"
    other.write_bytes((clips / "a.mp4").read_bytes())
    assert main(["predict", str(clips / "a.mp4"), str(other), "--plot", str(tmp_path / "h.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(other) in err and str(tmp_path / "h_a.png") in err


def test_fix_output_format_is_checked_before_measuring(tmp_path, clips, monkeypatch, capsys):
    monkeypatch.setattr(predict_mod, "load_weights", _no_model)
    out = tmp_path / "fixed.notaformat"
    assert main(["fix", str(clips / "a.mp4"), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (f"synchformer: error: {out}: no output format for the extension "
                                       "'.notaformat'\n")


# ------------------------------------------------------------------------------------------------ predict --json


@pytest.fixture
def oracle(monkeypatch):
    from oracle import OracleSync

    model = OracleSync()
    monkeypatch.setattr(predict_mod, "load_weights", lambda weights=None, **k: (model, str(weights), []))
    return model


def test_predict_json_has_one_object_per_input_in_input_order(tmp_path, clips, oracle, capsys):
    (tmp_path / "text.mp4").write_text("not a video")
    inputs = [clips / "a.mp4", tmp_path / "missing.mp4", clips / "short.mp4", tmp_path / "text.mp4",
              clips / "b.mp4"]
    assert main(["predict", *map(str, inputs), "--json", "--hop", "1.28"]) == 2
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["file"] for r in rows] == list(map(str, inputs))
    assert [r["status"] for r in rows] == ["ok", "error", "error", "error", "ok"]
    assert rows[0]["offset_sec"] == pytest.approx(0.4) and rows[4]["offset_sec"] == pytest.approx(-0.2)
    assert rows[1]["error"] == f"{inputs[1]}: file not found"
    assert "too short" in rows[2]["error"] and "not a readable media file" in rows[3]["error"]
    # each failure is also one line on stderr, as in the text mode (those found before the model loads first)
    assert sorted(captured.err.splitlines()) == sorted(f"synchformer: error: {r['error']}" for r in rows
                                                       if r["status"] == "error")


def test_predict_json_of_one_failed_input_is_an_error_object(tmp_path, oracle, capsys):
    missing = tmp_path / "missing.mp4"
    assert main(["predict", str(missing), "--json"]) == 2
    captured = capsys.readouterr()
    row = json.loads(captured.out)
    assert row["status"] == "error" and row["file"] == str(missing) and row["error"] == f"{missing}: file not found"
    assert captured.err == f"synchformer: error: {missing}: file not found\n"


def test_predict_text_mode_still_says_each_failure_on_stderr(tmp_path, clips, oracle, capsys):
    assert main(["predict", str(clips / "a.mp4"), str(clips / "short.mp4"), "--hop", "1.28"]) == 2
    captured = capsys.readouterr()
    assert "offset +0.40 s" in captured.out and "{" not in captured.out
    assert captured.err.count("\n") == 1 and "short.mp4: too short" in captured.err
