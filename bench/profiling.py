"""py-spy on a running process tree (only with `--profile`; py-spy is not a dependency).

    .venv/bin/pip install py-spy && python -m bench --profile

Records wall-clock samples of every process in the tree (idle threads included, so time spent
waiting on PostgreSQL, Redis or the network shows up as the function that waits), then sums
them into the top functions by self time and by inclusive time. The raw stacks stay in the
bench's log directory for flame graphs.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.stack import REPO

if TYPE_CHECKING:
    from bench.context import Bench

#: Samples per second per process.
RATE = 100
#: Frames py-spy writes for the process itself, not a Python function.
_PROCESS_FRAME = re.compile(r"^process (\d+):")
#: Leaf functions that mean "blocked, waiting for ...", by what is waited for.
WAITS = {
    "Connection.wait (psycopg/connection.py)": "PostgreSQL",
    "SocketBuffer._read_from_socket (redis/_parsers/socket.py)": "Redis",
    "Connection._recv (billiard/connection.py)": "the next task (pool process idle)",
    "SyncWorker.wait (gunicorn/workers/sync.py)": "the next request (idle)",
    "_epoll.poll (kombu/utils/eventio.py)": "the broker (event loop)",
}
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+)(?::\d+)?\)$")


def py_spy_path() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class PySpy:
    def __init__(self, pid: int, out: Path, max_seconds: float) -> None:
        self.pid = pid
        self.out = out
        binary = py_spy_path()
        assert binary is not None
        self.process = subprocess.Popen(
            [
                binary,
                "record",
                f"--pid={pid}",
                "--subprocesses",
                "--idle",
                # Sample without stopping the process: less overhead, rarely a torn stack.
                "--nonblocking",
                f"--rate={RATE}",
                "--format=raw",
                f"--duration={int(max_seconds)}",
                f"--output={out}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    @classmethod
    def for_bench(cls, bench: Bench, process: str, phase: str) -> PySpy | None:
        """Start recording `process` of the stack when the bench profiles; else None."""
        if not bench.profile:
            return None
        if py_spy_path() is None:
            note = "profile: py-spy is not installed (.venv/bin/pip install py-spy)"
            if note not in bench.notes:
                bench.notes.append(note)
            return None
        out = bench.workdir / f"py-spy-{process}-{phase}.txt"
        return cls(bench.stack.processes[process].pid, out, bench.plan.drain_timeout_s + 60)

    def stop(self) -> dict[str, Any]:
        """Stop (py-spy writes its file on SIGINT) and summarise."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            _, stderr = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate(timeout=5)
        if not self.out.exists():
            return {"error": (stderr or b"").decode(errors="replace")[-500:]}
        return summarize(self.out, self.pid)


Stack = tuple[int, list[str], int]


def summarize(raw: Path, root_pid: int, top: int = 20) -> dict[str, Any]:
    """Where the wall time of the pool processes goes (and, apart, that of the tree's root:
    Celery's consumer loop, gunicorn's arbiter), as % of their samples: blocked waiting (on
    PostgreSQL, Redis, the next task), running by package, the top functions by self time, and
    the app's own functions by inclusive time."""
    stacks: list[Stack] = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        pids = [int(m[1]) for m in map(_PROCESS_FRAME.match, frames) if m]
        names = [_short(f) for f in frames if not _PROCESS_FRAME.match(f)]
        stacks.append((pids[-1] if pids else root_pid, names, int(count)))
    processes = {pid for pid, _, _ in stacks}
    pool = [entry for entry in stacks if entry[0] != root_pid] or stacks
    summary = {"raw": str(raw), "pool_processes": len(processes - {root_pid}) or 1}
    summary.update(_where_time_goes(pool, top))
    if len(processes) > 1:
        root = [entry for entry in stacks if entry[0] == root_pid]
        summary["root_process"] = _where_time_goes(root, top // 2)
    return summary


def _where_time_goes(stacks: list[Stack], top: int) -> dict[str, Any]:
    total = sum(samples for _, _, samples in stacks) or 1
    by_function: Counter[str] = Counter()
    on_cpu_by_package: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    app_inclusive: Counter[str] = Counter()
    for _, names, samples in stacks:
        if not names:
            continue
        leaf = names[-1]
        by_function[leaf] += samples
        if leaf in WAITS:
            waiting[WAITS[leaf]] += samples
        else:
            on_cpu_by_package[_package(leaf)] += samples
        for name in {n for n in names if "(app/" in n}:
            app_inclusive[name] += samples

    def pct(counter: Counter[str], limit: int) -> dict[str, float]:
        return {name: round(100 * n / total, 1) for name, n in counter.most_common(limit)}

    return {
        "samples": total,
        "waiting_for_pct": pct(waiting, 10),
        "running_pct_by_package": pct(on_cpu_by_package, 12),
        "self_pct": pct(by_function, top),
        "app_inclusive_pct": pct(app_inclusive, top),
    }


def _package(name: str) -> str:
    """`f (psycopg/connection.py)` -> psycopg; `f (selectors.py)` -> selectors."""
    match = _FRAME.match(name)
    path = match["file"] if match else name
    return path.split("/", 1)[0].removesuffix(".py")


def _short(frame: str) -> str:
    """`function (path/to/module.py:12)` -> `function (module.py)`, packages kept short."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", f"{REPO}/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['function']} ({path})"
