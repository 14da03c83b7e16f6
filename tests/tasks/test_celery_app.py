"""The Celery app is made by a factory from one Settings: importing the app makes none, and
`celery -A app.tasks` gets the one its environment describes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def python(code: str, **env: str) -> str:
    """Run `code` in a fresh interpreter (process-wide state starts empty); its output."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_importing_the_front_end_the_tasks_and_standalone_makes_no_celery_app() -> None:
    printed = python(
        "import celery._state, app.web, app.tasks, app.standalone\n"
        "from app.config import get_settings\n"
        "print(celery._state.default_app, get_settings.cache_info().currsize)"
    )
    assert printed == "None 0"  # no Celery app made, no settings read


def test_celery_dash_a_finds_an_app_made_from_the_environment() -> None:
    printed = python(
        "from celery.app.utils import find_app\n"
        "import app.tasks\n"
        "found = find_app('app.tasks')\n"
        "print(found is app.tasks.celery, found.conf.broker_write_url)",
        CELERY_BROKER_URL="redis://127.0.0.1:9/5",
    )
    assert printed == "True redis://127.0.0.1:9/5"
