"""The rolling summary: one clipped line per turn, newest lines kept, rebuildable exactly."""

from __future__ import annotations

from app.agents.summary import EXCERPT_CHARS, REBUILD_TURNS, SUMMARY_MAX_CHARS, fold


def turn(n: int, size: int = 10) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": f"question {n} " + "x" * size},
        {"role": "assistant", "content": f"answer {n}"},
    ]


def test_each_turn_becomes_one_line() -> None:
    assert fold("", [turn(1, 0), turn(2, 0)]) == (
        "- user: question 1 | assistant: answer 1\n- user: question 2 | assistant: answer 2"
    )


def test_long_messages_are_clipped_and_whitespace_collapsed() -> None:
    long_turn = [
        {"role": "user", "content": "many\n\nwords   " + "y" * 500},
        {"role": "assistant", "content": "ok"},
    ]

    line = fold("", [long_turn])

    user_part = line.split(" | ")[0].removeprefix("- user: ")
    assert len(user_part) == EXCERPT_CHARS
    assert user_part.startswith("many words yyy") and user_part.endswith("…")


def test_the_summary_keeps_the_newest_lines_that_fit() -> None:
    summary = ""
    for n in range(200):
        summary = fold(summary, [turn(n, 100)])

    assert len(summary) <= SUMMARY_MAX_CHARS
    assert summary.splitlines()[-1].startswith("- user: question 199 ")
    assert "question 0 " not in summary


def test_folding_turn_by_turn_equals_folding_the_last_rebuild_turns() -> None:
    turns = [turn(n, n % 7) for n in range(3 * REBUILD_TURNS)]
    incremental = ""
    for one in turns:
        incremental = fold(incremental, [one])

    assert fold("", turns[-REBUILD_TURNS:]) == incremental
