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
