"""The time a node has left caps the SDKs' per-request timeouts (app/time_budget.py)."""

from __future__ import annotations

import threading
import time

from app import time_budget


def test_outside_a_node_a_timeout_is_left_as_it_is() -> None:
    assert time_budget.capped(60.0) == 60.0


def test_inside_a_node_a_timeout_is_cut_to_the_time_left() -> None:
    with time_budget.budget(2.0):
        time.sleep(0.2)
        left = time_budget.capped(60.0)
        assert 1.5 < left <= 1.8
        assert time_budget.capped(1.0) == 1.0  # a shorter timeout stays
    assert time_budget.capped(60.0) == 60.0  # the block's end restores it


def test_nested_budgets_keep_the_earlier_end() -> None:
    with time_budget.budget(1.0), time_budget.budget(30.0):
        assert time_budget.capped(60.0) <= 1.0
    with time_budget.budget(30.0), time_budget.budget(1.0):
        assert time_budget.capped(60.0) <= 1.0
        assert time_budget.capped(60.0) <= 1.0


def test_a_node_past_its_time_still_gets_a_usable_timeout() -> None:
    with time_budget.budget(0.01):
        time.sleep(0.05)
        assert time_budget.capped(60.0) == time_budget.MIN_TIMEOUT_S


def test_each_thread_has_its_own_budget() -> None:
    seen: list[float] = []
    with time_budget.budget(1.0):
        thread = threading.Thread(target=lambda: seen.append(time_budget.capped(60.0)))
        thread.start()
        thread.join()
    assert seen == [60.0]
