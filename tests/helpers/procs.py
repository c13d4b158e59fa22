"""The child processes of a pid, read from /proc (Linux), for tests that check nothing is left behind."""
from __future__ import annotations

import os
from pathlib import Path


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of every process whose parent is ``pid``, zombies (state ``Z``) included, sorted."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended while we looked
                continue
            if int(fields[1]) == pid:
                out.append((int(entry), fields[0]))
    return sorted(out)
