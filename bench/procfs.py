"""CPU time of process trees, read from /proc (Linux; no psutil needed).

A tree's CPU is the sum over its live processes of user + system time, plus the time of the
children they already reaped (cutime + cstime), so a backend that exits between two readings
still counts, once.
"""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def descendants(root: int) -> list[int]:
    """`root` and every process below it, alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by `root`'s tree (0.0 when it is gone)."""
    total = 0
    for pid in descendants(root):
        fields = _stat_fields(pid)
        if fields:
            # Fields 14-17 of /proc/<pid>/stat (1-based): utime stime cutime cstime.
            total += sum(int(value) for value in fields[11:15])
    return total / CLOCK_TICKS


def total_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (not idle or iowait) since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(value) for value in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLOCK_TICKS
