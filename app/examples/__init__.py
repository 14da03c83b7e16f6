"""Sample workflows shipped with the package (`app/examples/*.json`).

A sample holds `${name}` placeholders for what depends on the installation (the CRM's URL, where
to notify, the trigger's secret); `load_example` fills them in. `{{ ... }}` are the workflow's
own templates, rendered when it runs, and are left alone.

    definition = load_example("sales_lead", crm_url=..., notify_url=..., trigger_secret=...)
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

#: The seed's sales-lead automation; its credentials and the agent it talks to.
SALES_LEAD = "sales_lead"
SALES_LEAD_CREDENTIALS = ("crm-token", "sales-webhook")
SALES_LEAD_AGENT_ID = "sales-assistant"

_PLACEHOLDER = re.compile(r"\$\{([a-z_]+)\}")


def example_names() -> list[str]:
    return sorted(
        entry.name.removesuffix(".json")
        for entry in resources.files(__name__).iterdir()
        if entry.name.endswith(".json")
    )


def placeholders(name: str) -> set[str]:
    """The `${...}` names the sample needs."""
    return set(_PLACEHOLDER.findall(_text(name)))


def load_example(name: str, **values: str) -> dict[str, Any]:
    """The sample `name` with every placeholder filled in; KeyError names a missing one."""
    missing = placeholders(name) - values.keys()
    if missing:
        raise KeyError(f"sample {name!r} needs values for: {', '.join(sorted(missing))}")
    definition: dict[str, Any] = _fill(json.loads(_text(name)), values)
    return definition


def _text(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda match: values[match.group(1)], value)
    if isinstance(value, dict):
        return {key: _fill(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, values) for item in value]
    return value
