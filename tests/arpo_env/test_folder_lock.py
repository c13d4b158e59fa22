"""arpo_env.folder_lock: one holder at a time, the refusal names the holder, released on exit and on death."""
import os
import subprocess
import sys

import pytest

from arpo_env.folder_lock import LOCK_NAME, FolderBusy, FolderLock, folder_lock
from tests.helpers.waiting import wait_until

HOLDER = """
import sys, time
from arpo_env.folder_lock import FolderLock
lock = FolderLock(sys.argv[1], "arpo eval", hint="--out")
print("held", flush=True)
sys.stdin.read()  # hold until the test closes stdin or kills us
"""


def test_second_lock_is_refused_until_released(tmp_path):
    with folder_lock(tmp_path / "out", "arpo eval", hint="--out") as lock:
        assert lock.held and (tmp_path / "out" / LOCK_NAME).read_text() == f"{os.getpid()} arpo eval\n"
        with pytest.raises(FolderBusy) as exc:
            FolderLock(tmp_path / "out", "arpo eval", hint="--out")
        assert str(exc.value) == (f"another arpo eval is writing {tmp_path / 'out'} (pid {os.getpid()}); "
                                  "wait for it or use another --out")
        assert exc.value.pid == os.getpid()
    assert not lock.held
    lock.release()  # idempotent
    again = FolderLock(tmp_path / "out", "arpo train", hint="--output-dir")
    assert again.held
    again.release()


def test_lock_of_another_process_is_refused_and_freed_when_it_dies(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusy, match=f"another arpo eval is writing .* \\(pid {proc.pid}\\)"):
            FolderLock(tmp_path, "arpo eval")
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs, the kernel drops the lock
        proc.wait()
    assert wait_until(lambda: _free(tmp_path))


def _free(folder):
    try:
        FolderLock(folder, "probe").release()
        return True
    except FolderBusy:
        return False
