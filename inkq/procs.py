"""Child processes that cannot outlive their parent."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import Any, Sequence

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child, between fork and exec
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


def popen_child(cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """``Popen`` whose child gets SIGTERM if this process dies, so none is left stray."""
    return subprocess.Popen(list(cmd), preexec_fn=_die_with_parent, **kwargs)


def stop_all(procs: Sequence[subprocess.Popen], timeout_s: float = 15.0) -> None:
    """SIGTERM every running child, wait for them together, SIGKILL what is left."""
    import time

    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def python_module(module: str, *args: str) -> list[str]:
    """A command running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env
