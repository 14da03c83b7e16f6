"""An agent's personality as its system prompt (DESIGN.md: Agents).

Deterministic: the same traits always make the same prompt, so a conversation's prompt only
changes when the agent is edited. Named traits come first in a fixed order, then the free
entries in the order they were written.
"""

from __future__ import annotations

from typing import Any

#: The named fields of PersonalityTraits, in the order the prompt states them.
_NAMED = ("role", "tone", "style", "traits", "instructions")


def build_system_prompt(agent_name: str, traits: dict[str, Any], summary: str = "") -> str:
    """`You are <name>, <role>.` then one line per trait, then the conversation's summary."""
    role = traits.get("role")
    lines = [f"You are {agent_name}" + (f", {role}." if role else ".")]
    if traits.get("tone"):
        lines.append(f"Tone: {traits['tone']}.")
    if traits.get("style"):
        lines.append(f"Style: {traits['style']}.")
    if traits.get("traits"):
        lines.append("Traits: " + ", ".join(traits["traits"]) + ".")
    for name, value in traits.items():
        if name not in _NAMED:
            lines.append(f"{name.replace('_', ' ').capitalize()}: {_say(value)}.")
    if traits.get("instructions"):
        lines.append(str(traits["instructions"]))
    if summary:
        lines.append("Summary of the earlier conversation (oldest first):\n" + summary)
    return "\n".join(lines)


def _say(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)
