"""Writing outputs without ever losing the user's data: never over an input, always atomically, and checked
before any work (``check_output``, ``check_output_folder``) so that a run does not end, after minutes, in an
output it cannot write."""

from __future__ import annotations

import errno
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
    """``write(tmp_path)`` into a temporary file beside ``path``, then rename it into place. ``path`` gets the
    permissions of an ordinary file (the umask's), also where ``write`` replaced the temporary file with one of
    its own (safetensors does). A failure (a full disk, a read-only folder) is one SynchformerError naming
    ``path``; ``path`` is then as it was before, and no temporary file is left."""
    path = Path(path)
    if not path.parent.is_dir():
        raise SynchformerError(path, "cannot write: the folder does not exist")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
        os.close(fd)
        mode = 0o666 & ~current_umask()
        os.chmod(tmp, mode)  # mkstemp makes it private; an output gets the usual permissions
        write(tmp)
        if os.stat(tmp).st_mode & 0o777 != mode:  # ``write`` made a file of its own in its place
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        raise SynchformerError(path, f"cannot write: {_reason(e, path.parent)}; nothing written") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def check_output(path: str | os.PathLike, inputs=()) -> Path:
    """Before any work: ``path`` is a file this process can write (its folder exists, files can be created in
    it, the disk is not full) and not one of ``inputs``. One SynchformerError naming ``path`` otherwise."""
    out = Path(path)
    if out.is_dir():
        raise SynchformerError(out, "is a folder; give a file name for the output")
    folder = out.absolute().parent
    if not folder.is_dir():
        raise SynchformerError(out, "cannot write: the folder does not exist" if not folder.exists()
                               else f"cannot write: {folder} is not a folder")
    _check_writable(out, folder)
    protect_inputs(out, inputs)
    return out


def check_output_folder(path: str | os.PathLike) -> Path:
    """Before any work: ``path`` is a folder this process can write files into, or one it can create (with
    its parents). Creates nothing. One SynchformerError naming ``path`` otherwise."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise SynchformerError(folder, "is a file, not a folder")
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise SynchformerError(folder, f"cannot create the folder: {existing} is a file")
    _check_writable(folder, existing)
    return folder


def make_folder(path: str | os.PathLike) -> Path:
    """Create the output folder ``path`` with its parents (nothing if it exists); one SynchformerError if not."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SynchformerError(folder, f"cannot create the folder: {_reason(e, folder.parent)}") from None
    return folder


def _check_writable(path: Path, folder: Path) -> None:
    """A file can be created in ``folder`` (asked, then tried: root passes every permission test, and a
    read-only file system answers only when written to), and its disk has space left."""
    where = "" if folder == path.absolute().parent or folder == path.absolute() else f" ({folder})"
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SynchformerError(path, f"cannot write: the folder{where} is not writable (permission denied)")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".synchformer-check-")
    except OSError as e:
        raise SynchformerError(path, f"cannot write in the folder{where}: {_reason(e, folder)}") from None
    os.close(fd)
    os.unlink(probe)
    if _disk_full(folder):
        raise SynchformerError(path, f"cannot write: the disk of the folder{where} is full (no space left)")


def _disk_full(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs (Windows), or it cannot say
        return False
    if st.f_blocks == 0:  # a virtual file system without a size
        return False
    root = hasattr(os, "geteuid") and os.geteuid() == 0  # may use the blocks reserved for root
    return (st.f_bfree if root else st.f_bavail) == 0


def _reason(e: OSError, folder: Path) -> str:
    """What an OSError means for the user, in words (numpy's short writes carry no errno)."""
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) or (e.errno is None and _disk_full(folder)):
        return "no space left on the disk"
    if e.errno == errno.EROFS:
        return "the file system is read-only"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return (e.strerror or str(e)).rstrip(".")


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
