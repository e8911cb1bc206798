"""Writing outputs without ever losing the user's data: never over an input, always atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from synchformer.errors import SynchformerError


def protect_inputs(output: str | os.PathLike, inputs) -> Path:
    """Refuse an output path that is one of the inputs (never write over the user's data)."""
    out = Path(output)
    for src in inputs:
        src = Path(src)
        if out.resolve() == src.resolve() or (out.exists() and src.exists() and os.path.samefile(out, src)):
            raise SynchformerError(out, f"is an input file ({src}); choose another output name")
    return out


def write_atomic(path: str | os.PathLike, write) -> None:
    """``write(tmp_path)`` into a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    if not path.parent.is_dir():
        raise SynchformerError(path, "cannot write: the folder does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it private; an output gets the usual permissions
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise SynchformerError(path, f"cannot write: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def current_umask() -> int:
    """The process's umask. Read from /proc where there is one: setting it to read it (os.umask's only way)
    leaves it 0 for a moment, for every thread."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask
