"""Released models by name: downloaded once from a real HTTP server (one these tests start on 127.0.0.1,
serving files they make), md5-checked, resumed, and refused in one line when anything is wrong."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
import torch

import synchformer
from synchformer.cli import main
from synchformer.errors import SynchformerError
from synchformer.model import ModelConfig, Synchformer, released, save_model


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the test's folder, with byte ranges (for resumed downloads); counts requests per path."""
    requests: list

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append((self.path, self.headers.get("Range")))
        path = Path(self.directory) / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        first = 0
        if self.headers.get("Range"):
            first = int(self.headers["Range"].split("=")[1].split("-")[0])
            if first >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - first))
        self.end_headers()
        self.wfile.write(data[first:])


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A mirror serving one tiny model as "tiny-test" (<ID>/<ID>.safetensors) and a cache of its own."""
    root = tmp_path / "mirror"
    (root / "tiny-id").mkdir(parents=True)
    model = Synchformer(ModelConfig.tiny(image_size=32)).eval()
    save_model(model, root / "tiny-id" / "tiny-id.safetensors")
    md5 = hashlib.md5((root / "tiny-id" / "tiny-id.safetensors").read_bytes()).hexdigest()
    monkeypatch.setitem(released.MODELS, "tiny-test",
                        released.Released("tiny-id", "a test model", md5[:7], "tiny-id/tiny-id.safetensors"))
    requests = []
    handler = type("H", (_Handler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("SYNCHFORMER_MIRROR", f"http://127.0.0.1:{httpd.server_address[1]}/")
    monkeypatch.setenv("SYNCHFORMER_CACHE", str(tmp_path / "cache"))
    yield {"root": root, "model": model, "requests": requests, "cache": tmp_path / "cache"}
    httpd.shutdown()
    httpd.server_close()


def test_a_name_is_downloaded_once_and_loads(server):
    cached = released.cached_path("tiny-test")
    m = synchformer.load_model("tiny-test")
    assert cached.exists() and not list(server["cache"].glob("*.part"))
    x = torch.randn(1, 14, 16, 3, 32, 32), torch.randn(1, 14, 1, 128, 66)
    with torch.no_grad():
        assert torch.allclose(m(*x), server["model"](*x), atol=1e-5)
    assert len(server["requests"]) == 1
    synchformer.load_model("tiny-test")  # from the cache: no request
    assert len(server["requests"]) == 1


def test_an_interrupted_download_resumes(server):
    data = (server["root"] / "tiny-id" / "tiny-id.safetensors").read_bytes()
    part = released.cached_path("tiny-test").with_name("tiny-id.safetensors.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])
    path = released.fetch("tiny-test", progress=False)
    assert path.read_bytes() == data and not part.exists()
    assert server["requests"] == [("/tiny-id/tiny-id.safetensors", "bytes=1000-")]


def _clip(tmp_path):
    from synchformer.training.synth import make_sparse_clip

    path = tmp_path / "clip.mp4"
    make_sparse_clip(path, 880_032, duration=6.0)
    return path


def test_a_checksum_mismatch_is_deleted_and_refused(server, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(released.MODELS, "tiny-test", released.Released(
        "tiny-id", "a test model", "0000000", "tiny-id/tiny-id.safetensors"))
    with pytest.raises(SynchformerError, match="md5 checksum does not match"):
        released.fetch("tiny-test", progress=False)
    assert not list(server["cache"].iterdir())  # nothing half-downloaded or unchecked is kept
    code = main(["predict", str(_clip(tmp_path)), "--weights", "tiny-test"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "md5 checksum does not match" in err


def test_no_server_is_one_line_naming_the_url_and_the_way_out(server, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SYNCHFORMER_MIRROR", "http://127.0.0.1:9/nowhere/")  # the discard port: refused
    with pytest.raises(SynchformerError) as e:
        released.fetch("tiny-test", progress=False, timeout=5)
    msg = str(e.value)  # Python's way out: a path, the mirror, the bundled model by name
    assert "http://127.0.0.1:9/nowhere/tiny-id/tiny-id.safetensors" in msg and "--weights" not in msg
    assert "load_model" in msg and "SYNCHFORMER_MIRROR" in msg and 'load_model("bundled")' in msg
    assert main(["predict", str(_clip(tmp_path)), "--weights", "tiny-test"]) == 2
    err = capsys.readouterr().err.strip()  # the command line's way out
    assert len(err.splitlines()) == 1 and "cannot download tiny-test" in err and "--weights PATH" in err
    assert "--weights bundled" in err and "load_model" not in err


def test_models_lists_names_urls_and_the_cache(server, capsys):
    released.fetch("tiny-test", progress=False)
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert {"audioset", "vggsound", "lrs3", "syncability", "audioset-s1", "vggsound-s1", "lrs3-s1"} <= set(rows)
    assert rows["audioset"]["id"] == "24-01-04T16-39-21" and rows["audioset"]["md5"] == "54037d2"
    assert rows["audioset"]["url"].endswith("/24-01-04T16-39-21/24-01-04T16-39-21.pt")
    assert rows["audioset-s1"]["url"].endswith("/23-12-22T16-13-38/checkpoints/epoch_best.pt")
    assert rows["tiny-test"]["cached"] and rows["audioset"]["cached"] is None
    assert main(["models"]) == 0 and "tiny-test" in capsys.readouterr().out


def test_a_local_file_of_that_name_wins(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not released.is_name(str(tmp_path / "nope")) and released.is_name("tiny-test")
    (tmp_path / "tiny-test").write_bytes(b"x")
    assert not released.is_name("tiny-test")


def test_a_bare_state_dict_gets_the_settings_its_entry_knows(server, monkeypatch):
    """MMAudio's file is a bare state dict: what the tensors cannot tell (here also the tiny head counts) comes
    from the table, written as the sidecar beside the cached file."""
    bare = server["root"] / "bare.pth"
    torch.save(server["model"].state_dict(), bare)
    md5 = hashlib.md5(bare.read_bytes()).hexdigest()
    monkeypatch.setitem(released.MODELS, "bare-test", released.Released(
        "bare", "a bare test model", md5, "bare.pth",
        sidecar={"model": {"v_heads": 2, "a_heads": 2, "heads": 2, "center_segments": False}}))
    m = synchformer.load_model("bare-test")
    assert released.cached_path("bare-test").with_suffix(".json").exists()
    x = torch.randn(1, 14, 16, 3, 32, 32), torch.randn(1, 14, 1, 128, 66)
    with torch.no_grad():
        assert torch.allclose(m(*x), server["model"](*x), atol=1e-5)


def test_a_known_file_anywhere_is_recognised_by_its_md5(server, tmp_path, monkeypatch):
    """A user's own copy of MMAudio's state dict (no sidecar, any name) gets the table's settings: found by its
    whole md5, only when the weights leave something undetermined."""
    bare = tmp_path / "my_copy.pth"
    torch.save(server["model"].state_dict(), bare)
    with pytest.raises(SynchformerError, match="center_segments"):
        synchformer.load_model(bare)
    monkeypatch.setitem(released.MODELS, "bare-test", released.Released(
        "bare", "a bare test model", hashlib.md5(bare.read_bytes()).hexdigest(), "bare.pth",
        sidecar={"model": {"v_heads": 2, "a_heads": 2, "heads": 2, "center_segments": False, "timing": "authors"}}))
    m = synchformer.load_model(bare)
    assert m.cfg.timing == "authors" and not bare.with_suffix(".json").exists()


def test_without_weights_every_command_uses_audioset_or_says_the_bundled_model_stands_in(server, tmp_path,
                                                                                         monkeypatch, capsys):
    from synchformer.training.synth import make_sparse_clip

    clip = tmp_path / "c.mp4"
    make_sparse_clip(clip, 880_031, duration=6.0)
    monkeypatch.setitem(released.MODELS, "audioset", released.MODELS["tiny-test"])  # served by the test
    assert main(["predict", str(clip), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["weights"] == "audioset" and report["warnings"] == []
    monkeypatch.setenv("SYNCHFORMER_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("SYNCHFORMER_MIRROR", "http://127.0.0.1:9/")
    assert main(["predict", str(clip), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["weights"] == "bundled" and "bundled model" in report["warnings"][0]
    assert captured.err.count("synchformer: warning: using the bundled model") == 1
    # the warning says why, where from, and how to have the released model or silence it
    warning = report["warnings"][0]
    assert "Connection refused" in warning
    assert released.url_of("audioset") in warning and "SYNCHFORMER_MIRROR" in warning
    assert "--weights bundled" in warning
    # the name the JSON reports is one --weights takes: the same model, with no warning printed
    assert main(["predict", str(clip), "--json", "-w", report["weights"]]) == 0
    captured = capsys.readouterr()
    again = json.loads(captured.out)
    assert again["weights"] == "bundled" and again["offset_sec"] == report["offset_sec"]
    assert "warning" not in captured.err


def _refused_port() -> int:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("failure, reason", [("md5", "md5 checksum does not match"), ("404", "HTTP 404"),
                                             ("refused", "Connection refused")])
def test_why_a_download_failed_reaches_the_user_on_every_path(server, monkeypatch, capsys, failure, reason):
    """A mirror serving a bad file, a file it does not have, or no server at all: the default path (no
    --weights) warns with the reason, --weights NAME and --syncability-weights NAME refuse with it (and the
    command line's way out), load_model(NAME) with it and Python's way out; nothing unchecked is cached."""
    from synchformer.cli import common

    path = {"md5": "tiny-id/tiny-id.safetensors", "404": "gone/gone.pt", "refused": "tiny-id/tiny-id.safetensors"}
    entry = released.Released("bad-id", "a bad file", "0000000", path[failure])
    monkeypatch.setitem(released.MODELS, "audioset", entry)
    monkeypatch.setitem(released.MODELS, "syncability", entry)
    if failure == "refused":
        monkeypatch.setenv("SYNCHFORMER_MIRROR", f"http://127.0.0.1:{_refused_port()}/")
    url = released.url_of("audioset")

    model = common.load(None, "cpu")
    assert model.bundled == "synthetic_tiny" and model.weights_label == "bundled"
    warning = model.load_warning
    assert reason in warning and url in warning and "SYNCHFORMER_MIRROR" in warning and "--weights bundled" in warning
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("synchformer: warning: using the bundled model") and reason in err

    with pytest.raises(SynchformerError) as e:
        synchformer.load_model("audioset")
    msg = str(e.value)
    assert reason in msg and url in msg and "\n" not in msg
    assert "--weights" not in msg and 'load_model("bundled")' in msg and "SYNCHFORMER_MIRROR" in msg

    for option, call in [("--weights", lambda: common.load("audioset", "cpu")),
                         ("--syncability-weights", lambda: common.load_syncability("syncability", model, "cpu"))]:
        with pytest.raises(SynchformerError) as e:
            call()
        msg = str(e.value)
        assert reason in msg and url in msg and f"{option} PATH" in msg and f"{option} bundled" in msg
    assert not [p for p in server["cache"].rglob("*") if p.is_file()]  # nothing half-downloaded or unchecked


def test_the_bundled_models_have_names_every_weights_option_takes(server, tmp_path, monkeypatch, capsys):
    """"bundled" (= synthetic_tiny), synthetic_tiny_syncability and synthetic_tiny_fine: names for load_model,
    --weights, --syncability-weights and --fine-weights, listed by `synchformer models`; a file of that name
    here still wins."""
    from synchformer.cli import common
    from synchformer.model import bundled

    for name, file, head in [("bundled", bundled.SYNTHETIC_TINY, "offset"),
                             ("synthetic_tiny", bundled.SYNTHETIC_TINY, "offset"),
                             ("synthetic_tiny_syncability", bundled.SYNTHETIC_TINY_SYNCABILITY, "synchronizability"),
                             ("synthetic_tiny_fine", bundled.SYNTHETIC_TINY_FINE, "offset")]:
        m = synchformer.load_model(name)
        assert m.source_path == str(file) and m.cfg.head == head and m.bundled == bundled.bundled_name(file)
    assert not server["requests"]  # never a download

    offset = common.load("bundled", "cpu")
    assert offset.weights_label == "bundled" and offset.bundled == "synthetic_tiny"
    assert "synthetic" in offset.load_warning and "warning" not in capsys.readouterr().err
    gate = common.load_syncability("synthetic_tiny_syncability", offset, "cpu")
    assert gate.bundled == "synthetic_tiny_syncability"
    assert common.companion_label("synthetic_tiny_syncability", gate) == "synthetic_tiny_syncability"
    assert common.load_syncability("bundled", offset, "cpu").bundled == "synthetic_tiny_syncability"
    assert common.load_fine("synthetic_tiny_fine", offset, "cpu").bundled == "synthetic_tiny_fine"
    assert common.load_fine("bundled", offset, "cpu").bundled == "synthetic_tiny_fine"
    with pytest.raises(SynchformerError, match="synchronizability head"):
        common.load("synthetic_tiny_syncability", "cpu", head="offset")

    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    tiny = rows["synthetic_tiny"]
    assert tiny["aliases"] == ["bundled"] and tiny["cached"] == str(bundled.SYNTHETIC_TINY) and tiny["bundled"]
    assert rows["audioset"]["bundled"] is False
    assert rows["synthetic_tiny_fine"]["bundled"] and rows["synthetic_tiny_syncability"]["url"] is None
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "bundled = synthetic_tiny" in text and "synthetic_tiny_fine" in text

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bundled").write_bytes(b"not a checkpoint")
    with pytest.raises(SynchformerError, match="^bundled: "):
        synchformer.load_model("bundled")
