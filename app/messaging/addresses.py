"""Checks on what ends up in a message's headers: no line breaks, real addresses, E.164 numbers.

Raised as ValueError naming the field, so they read well both as a 422 when a workflow is saved
(literal values) and as the node's error after rendering (values from templates).
"""

from __future__ import annotations

import re
from email.utils import formataddr, getaddresses

#: E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_ADDR_SPEC = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+$")


def one_line(value: str, field: str) -> str:
    """`value` unchanged, or ValueError when it holds CR or LF (header injection)."""
    if "\r" in value or "\n" in value:
        raise ValueError(
            f"{field} contains a line break (CR or LF); header values must be one line "
            "(refused: header injection)"
        )
    return value


def email_addresses(value: str | list[str], field: str) -> list[str]:
    """One or many addresses (`a@x`, `Name <a@x>`, or a comma-separated string of them),
    each returned as one header-ready address."""
    items = [value] if isinstance(value, str) else list(value)
    found: list[str] = []
    for item in items:
        one_line(item, field)
        pairs = getaddresses([item])
        if not pairs or any(not _ADDR_SPEC.match(addr) for _name, addr in pairs):
            raise ValueError(f"{field} is not a valid email address")
        found += [formataddr(pair) for pair in pairs]
    return found


def email_address(value: str, field: str) -> str:
    found = email_addresses(value, field)
    if len(found) != 1:
        raise ValueError(f"{field} must be exactly one email address")
    return found[0]


def bare_address(header_address: str) -> str:
    """`a@x` of `Name <a@x>`, for the SMTP envelope."""
    return getaddresses([header_address])[0][1]


def e164(value: str, field: str) -> str:
    if not E164.match(value):
        raise ValueError(f"{field} must be an E.164 phone number such as +14155552671")
    return value
