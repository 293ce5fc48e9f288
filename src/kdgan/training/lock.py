"""One training process per run folder: an advisory lock held for the process's lifetime.

The lock is `fcntl.flock` on `RUN/.kdgan.lock`. The kernel releases it when the process ends
in any way (exit, crash, `kill -9`), so a dead holder never leaves the folder stuck; the
file's text (pid, host, start time, command) only names the holder for the refusal message.
Within one process the lock is re-entrant (the CLI takes it before loading the data, the
trainer again around the loop).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from kdgan.errors import KdganError

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

log = logging.getLogger(__name__)

LOCK_NAME = ".kdgan.lock"
_held: set[str] = set()  # lock files this process holds


def _holder_text(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return (f"pid {info['pid']} on {info['host']}, started {info['started']}: "
                f"{info.get('command', '?')}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process whose details could not be read"


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of `run_dir` for the `with` block, or raise KdganError naming the process
    that holds it. A folder this call creates is removed again if nothing else was written to it."""
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    key = str(path.resolve())
    if key in _held:  # re-entrant within this process
        yield path
        return
    if fcntl is None:
        log.warning("this platform has no fcntl.flock: %s is not locked against a second training", run_dir)
        yield path
        return
    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise KdganError(
            f"{run_dir} is in use by another kdgan training ({_holder_text(path)}); wait for it to "
            "finish or stop it (it resumes later from its checkpoint), or use another --outdir"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                        "command": " ".join(sys.argv)[:500]}) + "\n")
    f.flush()
    _held.add(key)
    try:
        yield path
    finally:
        _held.discard(key)
        if created and [p.name for p in run_dir.iterdir()] == [LOCK_NAME]:
            with contextlib.suppress(OSError):  # a start that failed before writing anything
                path.unlink()  # leaves no folder behind
                run_dir.rmdir()
        f.close()  # closing the descriptor releases the flock
