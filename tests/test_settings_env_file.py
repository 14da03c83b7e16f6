"""Settings also load from `.env` in the working directory; the environment wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings


def test_a_dotenv_file_fills_what_the_environment_does_not_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "# compose's variables are ignored\nPOSTGRES_USER=dualmcp\n"
        "DUALMCP_MAX_QUEUE_DEPTH=7\nDUALMCP_NODE_TIMEOUT_S=42\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DUALMCP_MAX_QUEUE_DEPTH", raising=False)
    monkeypatch.setenv("DUALMCP_NODE_TIMEOUT_S", "9")
    settings = Settings()
    assert settings.max_queue_depth == 7
    assert settings.default_node_timeout_s == 9  # the environment wins


def test_without_a_dotenv_file_the_defaults_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DUALMCP_MAX_QUEUE_DEPTH", raising=False)
    assert Settings().max_queue_depth == Settings.model_fields["max_queue_depth"].default
