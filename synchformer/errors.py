"""User-facing errors: one line that names the file and what is wrong with it."""

from __future__ import annotations

import os


class SynchformerError(Exception):
    """An error caused by the user's input (a file, a flag), not by a bug.

    The command-line interface prints ``str(err)`` as a single line and exits with code 2.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = " ".join(str(problem).split())  # one line, always
        super().__init__(self.problem if self.path is None else f"{self.path}: {self.problem}")

    def __reduce__(self):
        # rebuilt from (path, problem), not from the message: an error raised in a worker process (synth, eval,
        # score) reaches the parent as the same one line, not as a TypeError
        return type(self), (self.path, self.problem)
