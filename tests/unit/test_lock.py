"""The run-folder lock: a second process refuses at once, naming the holder; kill -9 frees it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from kdgan.errors import KdganError
from kdgan.training.lock import LOCK_NAME, run_lock

HOLD = "import sys, time; from kdgan.training.lock import run_lock\n" \
       "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)\n"


def test_second_process_refused_naming_the_holder_and_kill9_frees_it(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(KdganError) as e, run_lock(run):
            pass
        message = str(e.value)
        assert f"pid {holder.pid} on {socket.gethostname()}" in message and "another --outdir" in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_lock(run) as path:  # the dead holder's lock is gone; its file is simply taken over
        assert f'"pid": {os.getpid()}' in path.read_text()


def test_reentrant_in_one_process_and_a_failed_start_leaves_no_folder(tmp_path):
    run = tmp_path / "new"
    with pytest.raises(RuntimeError), run_lock(run):
        with run_lock(run):  # the CLI holds it, then the trainer takes it again
            assert (run / LOCK_NAME).exists()
        raise RuntimeError("bad config")
    assert not run.exists()
    run.mkdir()
    (run / "log.jsonl").write_text("{}\n")
    with run_lock(run):
        pass
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME, "log.jsonl"]  # existing folders stay
