"""The watchdog's deadlines: NodeTimeout in any thread at its time, never after its block."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from app.errors import NodeTimeout
from app.workflows.deadlines import ThreadDeadline, watchdog
from app.workflows.invoke import deadline


def in_thread(work: Callable[[], Any]) -> Any:
    """Run `work` in a new thread (not the main one, as a threads pool does); its result or
    the exception it raised."""
    result: list[Any] = []

    def target() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # handed to the test to assert on
            result.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    return result[0]


def spin(seconds: float) -> str:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        pass
    return "finished"


def elapsed(work: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    return work(), time.monotonic() - started


def test_a_python_loop_in_a_worker_thread_stops_at_its_deadline() -> None:
    def work() -> str:
        with ThreadDeadline(0.3):
            return spin(5)

    result, took = elapsed(lambda: in_thread(work))
    assert isinstance(result, NodeTimeout)
    assert 0.25 < took < 1.0


def test_sleeping_in_slices_stops_within_a_slice_of_the_deadline() -> None:
    def work() -> str:
        with ThreadDeadline(0.3):
            for _ in range(50):
                time.sleep(0.05)
        return "finished"

    result, took = elapsed(lambda: in_thread(work))
    assert isinstance(result, NodeTimeout)
    assert took < 0.6


def test_a_block_that_ends_in_time_is_never_interrupted_afterwards() -> None:
    def work() -> str:
        with ThreadDeadline(0.2):
            spin(0.05)
        spin(0.5)  # well past the deadline, outside the block
        return "finished"

    assert in_thread(work) == "finished"


def test_nested_deadlines_each_fire_on_their_own_time() -> None:
    def work() -> tuple[str, float]:
        started = time.monotonic()
        with ThreadDeadline(0.6):
            try:
                with ThreadDeadline(0.2):
                    spin(5)
            except NodeTimeout:
                inner = time.monotonic() - started
            try:
                spin(5)
            except NodeTimeout:
                return "outer", inner
        return "never", inner

    (which, inner), took = elapsed(lambda: in_thread(work))
    assert which == "outer"
    assert 0.15 < inner < 0.45
    assert 0.55 < took < 1.0


def test_a_cancelled_inner_deadline_leaves_the_outer_one_armed() -> None:
    def work() -> str:
        with ThreadDeadline(0.3):
            with ThreadDeadline(5):
                spin(0.05)
            return spin(5)

    result, took = elapsed(lambda: in_thread(work))
    assert isinstance(result, NodeTimeout)
    assert took < 1.0


def test_many_threads_each_get_their_own_deadline() -> None:
    outcomes: dict[int, str] = {}

    def node(index: int) -> None:
        slow = index % 2 == 0
        try:
            with ThreadDeadline(1.0):
                for _ in range(60 if slow else 1):
                    time.sleep(0.05)
            outcomes[index] = "finished"
        except NodeTimeout:
            outcomes[index] = "timed out"
        time.sleep(1.2)  # past every deadline: nothing may arrive after the block

    threads = [threading.Thread(target=node, args=(index,)) for index in range(200)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert time.monotonic() - started < 6  # 200 slow nodes stopped at ~1 s, not 3 s each
    assert {i: outcomes.get(i) for i in range(200)} == {
        i: "timed out" if i % 2 == 0 else "finished" for i in range(200)
    }


def test_a_deadline_racing_the_end_of_its_block_never_fires_after_it() -> None:
    """Blocks that end right at their deadline: either the block raises, or nothing does."""

    def work() -> tuple[int, int]:
        timed_out = finished = 0
        for _ in range(300):
            try:
                with ThreadDeadline(0.002):
                    spin(0.002)
                finished += 1
            except NodeTimeout:
                timed_out += 1
            spin(0.003)  # a late raise would land here, outside any try
        return timed_out, finished

    result = in_thread(work)
    assert not isinstance(result, BaseException), result
    timed_out, finished = result
    assert timed_out + finished == 300


def test_left_deadlines_do_not_pile_up_in_the_watchdog() -> None:
    def work() -> int:
        for _ in range(5000):
            with ThreadDeadline(600):
                pass
        time.sleep(0.2)  # let the watchdog take them in
        return watchdog().pending()

    assert in_thread(work) < 2100


def test_a_nodes_deadline_outside_the_main_thread_is_armed_and_fires() -> None:
    def work() -> Any:
        with deadline(0.2) as armed:
            assert armed
            spin(5)

    result, took = elapsed(lambda: in_thread(work))
    assert isinstance(result, NodeTimeout)
    assert took < 0.8


def test_a_nodes_deadline_in_the_main_thread_still_cuts_a_blocking_sleep() -> None:
    started = time.monotonic()
    with pytest.raises(NodeTimeout), deadline(0.2) as armed:
        assert armed
        time.sleep(5)  # SIGALRM interrupts the system call; the watchdog could not
    assert time.monotonic() - started < 1
