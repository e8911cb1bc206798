"""Package attributes imported on first use (PEP 562), so that `synchformer --help` and the CLI's input checks
answer before torch is imported (about 1.7 s)."""

from __future__ import annotations

import importlib


def lazy_attributes(package: str, where: dict[str, str]):
    """Return (__getattr__, __dir__) for `package`, whose names in `where` live in the named modules."""
    def __getattr__(name):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__():
        return sorted({*vars(importlib.import_module(package)), *where})

    return __getattr__, __dir__
