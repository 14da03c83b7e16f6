"""Tool names mapped to the providers' rule and back (pure: no services)."""

from __future__ import annotations

import re
from random import Random

from hypothesis import given
from hypothesis import strategies as st

from app.mcp.tool_names import ToolNames

PROVIDER_RULE = re.compile(r"^[a-zA-Z0-9_-]{1,64}\Z")


def test_a_valid_name_is_its_own_wire_name() -> None:
    tools = ["score_lead", "get-run", "A1"]
    names = ToolNames(tools)

    assert [names.wire(n) for n in tools] == tools
    assert names.original("score_lead") == "score_lead"


def test_invalid_characters_become_underscores() -> None:
    names = ToolNames(["github.search/issues", "räksmörgås"])

    assert names.wire("github.search/issues") == "github_search_issues"
    assert names.wire("räksmörgås") == "r_ksm_rg_s"
    assert names.original("github_search_issues") == "github.search/issues"


def test_a_long_name_is_shortened_with_a_hash_and_maps_back() -> None:
    long = "crm." + "x" * 120
    names = ToolNames([long])

    wire = names.wire(long)

    assert len(wire) == 64
    assert re.fullmatch(r"crm_x+_[0-9a-f]{8}", wire)
    assert names.original(wire) == long


def test_names_that_clash_after_mapping_all_get_distinct_hashed_names() -> None:
    names = ToolNames(["a.b", "a/b", "a b"])

    wires = {names.wire(n) for n in ("a.b", "a/b", "a b")}

    assert len(wires) == 3
    assert all(re.fullmatch(r"a_b_[0-9a-f]{8}", wire) for wire in wires)


def test_a_valid_name_keeps_its_name_when_a_mapped_one_would_take_it() -> None:
    names = ToolNames(["a.b", "a_b"])

    assert names.wire("a_b") == "a_b"
    assert names.wire("a.b").startswith("a_b_")
    assert names.original(names.wire("a.b")) == "a.b"


def test_the_mapping_does_not_depend_on_the_order_of_the_names() -> None:
    tools = ["a.b", "a_b", "a/b", "x" * 70, "x" * 71, "ok"]

    first, second = ToolNames(tools), ToolNames(list(reversed(tools)))

    assert [first.wire(t) for t in tools] == [second.wire(t) for t in tools]


def test_an_unknown_wire_name_has_no_original() -> None:
    names = ToolNames(["score_lead"])

    assert names.original("score-lead") is None
    assert names.original("") is None


def test_a_trailing_newline_is_not_valid() -> None:
    names = ToolNames(["tool\n"])

    assert names.wire("tool\n") == "tool_"
    assert names.original("tool_") == "tool\n"


def test_a_name_not_in_the_list_still_gets_a_valid_wire_name() -> None:
    names = ToolNames(["score_lead"])

    assert names.wire("removed_tool") == "removed_tool"
    assert PROVIDER_RULE.match(names.wire("old.tool"))
    assert names.original(names.wire("old.tool")) is None


def test_the_empty_name_maps_to_a_valid_one() -> None:
    names = ToolNames([""])

    assert PROVIDER_RULE.match(names.wire(""))
    assert names.original(names.wire("")) == ""


# MCP names are mostly [A-Za-z0-9_.-/], up to 128; any text is allowed here to be safe.
mcp_like = st.text(alphabet="ab_-./ Z9é", max_size=130)
any_name = st.one_of(mcp_like, st.text(max_size=140))


@given(st.lists(any_name, max_size=30))
def test_every_wire_name_follows_the_rule_is_unique_and_maps_back(tools: list[str]) -> None:
    names = ToolNames(tools)

    wires = [names.wire(t) for t in set(tools)]

    assert all(PROVIDER_RULE.match(wire) for wire in wires)
    assert len(set(wires)) == len(wires)
    assert all(names.original(names.wire(t)) == t for t in tools)


@given(st.lists(any_name, max_size=20), st.randoms())
def test_any_order_gives_the_same_mapping(tools: list[str], random: Random) -> None:
    shuffled = list(tools)
    random.shuffle(shuffled)

    first, second = ToolNames(tools), ToolNames(shuffled)

    assert all(first.wire(t) == second.wire(t) for t in tools)
