"""What a production role (web, worker, beat) refuses to start without, and warns about.

Without DUALMCP_ENCRYPTION_KEY every credential write answers 503 and every node that needs a
credential fails: better to stop at start, saying how to make a key, than to run half-broken.
The shipped examples (.env.example, deploy/kubernetes/examples/secret.yaml) carry working
placeholders so `cp .env.example .env` starts; while those are in use the roles warn loudly.
Standalone mode generates its own key and never comes here.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from app import apikeys
from app.config import Settings
from app.credentials import EncryptionNotConfigured, cipher_for

#: The placeholders the examples ship: a valid Fernet key, and an admin key anyone can read.
EXAMPLE_ENCRYPTION_KEY = "hKGVSp3lJQjv5bSKBYkNEp-y-E91oeiK5gLceqXyHRI="
EXAMPLE_ADMIN_KEY = "change-me-admin-key"

log = logging.getLogger(__name__)


@dataclass
class StartupReport:
    """Reasons not to start, and reasons to worry."""

    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check(settings: Settings) -> StartupReport:
    report = StartupReport()
    try:
        cipher_for(settings)
    except EncryptionNotConfigured as exc:
        report.refusals.append(
            f'{exc}. Make one with `dualmcp keys new-encryption-key` (or `python -c "from '
            'cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`) and '
            "set DUALMCP_ENCRYPTION_KEY in .env (compose) or the dualmcp-secrets Secret "
            "(Kubernetes); keep it: credentials stored with it cannot be read without it"
        )
    key = settings.encryption_key
    if key is not None and EXAMPLE_ENCRYPTION_KEY in key.get_secret_value().split(","):
        report.warnings.append(
            "DUALMCP_ENCRYPTION_KEY is the example's key, published with the code: anyone can "
            "decrypt your credentials. Replace it (`dualmcp keys new-encryption-key`, then "
            "`dualmcp keys rotate-encryption` with the new key first)"
        )
    try:
        env_keys = apikeys.parse_env_keys(settings.api_keys)
    except ValueError as exc:
        report.refusals.append(str(exc))
        env_keys = []
    if any(key == EXAMPLE_ADMIN_KEY for _, key in env_keys):
        report.warnings.append(
            f"DUALMCP_API_KEYS holds the example's key {EXAMPLE_ADMIN_KEY!r}: anyone can use "
            "this API. Replace it (`dualmcp keys create --scope admin`, or a long random value)"
        )
    return report


def enforce(settings: Settings, role: str) -> None:
    """Warn loudly about example secrets; exit (status 2) with the reasons when a production
    role cannot run. Called where each role starts (gunicorn's config, Celery's init signals)."""
    report = check(settings)
    for warning in report.warnings:
        log.warning("INSECURE %s: %s", role, warning)
    if report.refusals:
        # Plain stderr: logging may not be configured yet where a role starts.
        for refusal in report.refusals:
            print(f"dualmcp {role} cannot start: {refusal}", file=sys.stderr)
        raise SystemExit(2)
