"""Stopping on Ctrl-C, SIGTERM or SIGHUP (a job scheduler, `timeout`, a closed terminal) without leaving
things behind: the signal becomes an exception, so ``finally`` blocks and exit handlers run (decoding workers
stopped, temporary files and multiprocessing's /tmp/pymp-* folders removed), and a few short steps that must
not be cut in half (starting worker processes) hold it until they are done."""

from __future__ import annotations

import contextlib
import signal
import threading


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived; unwinds like KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_held = 0  # depth of `held_signals` blocks in the main thread
_pending: list[int] = []


def _raise_for(signum: int):
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def _handler(signum, frame):
    if _held:
        _pending.append(signum)
        return
    _raise_for(signum)


def _our_signals():
    return [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]


@contextlib.contextmanager
def stop_cleanly_on_signals():
    """For the command line: SIGINT, SIGTERM and SIGHUP raise (KeyboardInterrupt / Terminated). A handler
    someone else installed, or SIG_IGN (e.g. under nohup), is left alone, as are threads other than the main."""
    installed = {}
    if threading.current_thread() is threading.main_thread():
        for sig in _our_signals():
            default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            if signal.getsignal(sig) is default:
                installed[sig] = signal.signal(sig, _handler)
    try:
        yield
    finally:
        for sig, old in installed.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def held_signals():
    """Delay our signals until the block is done (outside the main thread, or without our handlers, a no-op:
    a signal then interrupts as usual)."""
    global _held
    main = threading.current_thread() is threading.main_thread()
    if main:
        _held += 1
    try:
        yield
    finally:
        if main:
            _held -= 1
            if not _held and _pending:
                signum = _pending[0]
                _pending.clear()
                _raise_for(signum)
