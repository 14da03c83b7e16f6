"""`python -m bench` (`make bench`): start the stack, run every scenario, print, write JSON.

    python -m bench            the full benchmark (several minutes)
    python -m bench --quick    the same scenarios, smaller (about 2.5 min; what CI may run)
    python -m bench --profile  also py-spy the worker (http nodes, saturation) and gunicorn
    python -m bench --only http,control   only those scenarios (into bench/results/only.json)

Everything it starts (PostgreSQL, Redis, gunicorn, Celery worker and beat, the baseline worker,
the echo server, the load generators) is stopped at the end, on failure and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import report
from bench.context import Bench
from bench.plan import FULL, QUICK
from bench.stack import DEFAULT_STATE_DIR, Stack


class Deadline(BaseException):
    """The whole run took longer than its plan allows (a BaseException, so no scenario's
    `except Exception` swallows it and the run really stops)."""


def _raise_deadline(_signum: int, _frame: FrameType | None) -> None:
    raise Deadline("the benchmark ran past its deadline")


def _exit_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(143)  # unwinds through the finally blocks: everything is stopped


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about 2.5 min")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker and gunicorn")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for every app process, e.g. DUALMCP_MAX_QUEUE_DEPTH=200 (repeatable)",
    )
    parser.add_argument(
        "--only",
        default="",
        metavar="NAMES",
        help="run only the scenarios whose names contain one of these comma-separated words "
        "(e.g. 'chain,http'); for iterating on one number, not for published results",
    )
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/latest.json")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    return parser.parse_args(argv)


def selected(scenarios: list[tuple[str, Any]], only: str) -> list[tuple[str, Any]]:
    """The scenarios named by --only (all when it is empty); calibration always runs."""
    words = [word.strip().lower() for word in only.split(",") if word.strip()]
    if not words:
        return scenarios
    return [
        (name, scenario)
        for name, scenario in scenarios
        if "calibration" in name or any(word in name.lower() for word in words)
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    extra_env = dict(item.split("=", 1) for item in args.env)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGALRM, _raise_deadline)
    signal.alarm(int(plan.deadline_s))
    began = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_at_start = [round(value, 2) for value in os.getloadavg()]
    stack = Stack(state_dir=args.state_dir, extra_env=extra_env)
    bench = Bench(plan=plan, stack=stack, workdir=stack.log_dir, profile=args.profile)
    failed: list[str] = []
    print(f"bench: {'quick' if plan.quick else 'full'} run; logs in {stack.log_dir}", flush=True)
    try:
        stack.start()
        print(f"bench: stack up in {time.monotonic() - began:.1f}s", flush=True)
        from bench.scenarios import SCENARIOS

        for name, scenario in selected(SCENARIOS, args.only):
            step = time.monotonic()
            print(f"bench: {name} ...", flush=True)
            try:
                scenario(bench)
            except Exception as exc:
                failed.append(name)
                bench.notes.append(f"{name.strip()}: failed: {type(exc).__name__}: {exc}")
                traceback.print_exc()
            print(f"bench: {name} done in {time.monotonic() - step:.1f}s", flush=True)
            dead = stack.check_alive() if stack.processes else []
            if dead:
                bench.notes.append(f"after {name.strip()}: processes died: {', '.join(dead)}")
                for process in dead:
                    print(stack.processes[process].tail(), file=sys.stderr)
                failed.append(name)
                break
    except (Exception, Deadline, KeyboardInterrupt) as exc:
        failed.append("stack")
        bench.notes.append(f"aborted: {type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        signal.alarm(0)
        extra = {
            "started_at": started_at,
            "duration_s": round(time.monotonic() - began, 1),
            "load_average_at_start": load_at_start,
            "complete": not failed,
            "profiled": args.profile,
            "only": args.only or None,
        }
        try:
            if stack.database_url:
                # A partial run never overwrites latest.json, which bench/README.md quotes.
                out = args.out or (report.RESULTS / "only.json" if args.only else None)
                path = report.write(bench, extra, out)
                print(f"bench: wrote {path}", flush=True)
        except Exception:
            traceback.print_exc()
        bench.close()
        problems = stack.stop()
        for problem in problems:
            print(f"bench: {problem}", file=sys.stderr)
    print()
    print(report.table(bench.metrics))
    for note in bench.notes:
        print(f"note: {note}")
    print(f"\nbench: {time.monotonic() - began:.1f}s in all", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
