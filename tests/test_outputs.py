"""Outputs are written atomically and get the permissions an ordinary file gets (the umask), not mkstemp's 0600."""

from __future__ import annotations

import os

import pytest
import torch

from synchformer.io.outputs import write_atomic
from synchformer.model.checkpoint import save_safetensors


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_write_atomic_uses_the_umask(tmp_path, umask):
    out = tmp_path / "features.safetensors"
    write_atomic(out, lambda tmp: open(tmp, "wb").write(b"x"))
    assert out.read_bytes() == b"x"
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["features.safetensors"]  # no temporary file left behind


def test_saved_checkpoint_uses_the_umask(tmp_path, umask):
    out = tmp_path / "model.safetensors"
    save_safetensors({"w": torch.zeros(2)}, out, {"kind": "test"})
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~umask


def test_a_user_error_crosses_a_process_boundary_as_itself():
    """Raised in a worker process (synth, eval, score), it is pickled back: it failed with a TypeError."""
    import pickle

    from synchformer.errors import SynchformerError
    from synchformer.plots import PlotDependencyError

    for e in (SynchformerError("a.mp4", "file not found"), SynchformerError(None, "no file"),
              PlotDependencyError(None, "plotting needs matplotlib")):
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and str(back) == str(e) and (back.path, back.problem) == (e.path, e.problem)
