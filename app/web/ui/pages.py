"""The HTML shells: public and data-free. Each names the fragment that fills it; the URL's
ids and filters only travel into that fragment's URL, escaped by `url_for`."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request, url_for
from flask.typing import ResponseReturnValue

from app.web.ui.security import secure_headers

bp = Blueprint(
    "ui",
    __name__,
    url_prefix="/ui",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
bp.after_request(secure_headers)

#: The runs page's filters, passed on to its fragment as they are (the fragment checks them).
RUN_FILTERS = ("workflow_id", "status", "since", "cursor")


def _shell(title: str, fragment: str, **page: object) -> ResponseReturnValue:
    return render_template("ui/shell.html", title=title, fragment_url=fragment, **page)


@bp.get("/login")
def login_page() -> ResponseReturnValue:
    return render_template("ui/login.html", title="Log in", public=True)


@bp.get("/runs")
@bp.get("/")  # the first rule registered (decorators apply bottom up) is the one url_for builds
def runs_page() -> ResponseReturnValue:
    filters: dict[str, Any] = {
        name: request.args[name] for name in RUN_FILTERS if request.args.get(name)
    }
    return _shell(
        "Runs",
        url_for("ui_fragments.runs", **filters),
        section="runs",
        filters=filters,
    )


@bp.get("/runs/<run_id>")
def run_page(run_id: str) -> ResponseReturnValue:
    return _shell(f"Run {run_id[:8]}", url_for("ui_fragments.run", run_id=run_id), section="runs")


@bp.get("/workflows")
def workflows_page() -> ResponseReturnValue:
    return _shell("Workflows", url_for("ui_fragments.workflows"), section="workflows")


@bp.get("/workflows/<workflow_id>")
def workflow_page(workflow_id: str) -> ResponseReturnValue:
    fragment = url_for("ui_fragments.workflow", workflow_id=workflow_id)
    return _shell(f"Workflow {workflow_id}", fragment, section="workflows")


@bp.get("/agents")
def agents_page() -> ResponseReturnValue:
    return _shell("Agents", url_for("ui_fragments.agents"), section="agents")


@bp.get("/agents/<agent_id>")
def agent_page(agent_id: str) -> ResponseReturnValue:
    session_id = request.args.get("session_id") or None
    fragment = url_for("ui_fragments.agent", agent_id=agent_id, session_id=session_id)
    return _shell(f"Agent {agent_id}", fragment, section="agents")


@bp.get("/outbox")
def outbox_page() -> ResponseReturnValue:
    return _shell("Outbox", url_for("ui_fragments.outbox"), section="outbox")
