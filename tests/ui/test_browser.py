"""The pages in a real browser (Debian's chromium through Playwright) against the real stack:
gunicorn, a Celery worker, PostgreSQL and Redis, each test a few seconds.

Set DUALMCP_SCREENSHOTS_DIR to keep the screenshots (`make screenshots` writes docs/screenshots).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from app.models import make_engine, make_session_factory
from tests.http_peer import HttpPeer
from tests.integration.conftest import (
    STACK_ENV,
    Stack,
    empty_redis_database,
    gunicorn,
    own_database,
)
from tests.web.factories import unique_id

pytestmark = pytest.mark.integration

ADMIN_KEY = "ui-admin-key"
READ_KEY = "ui-read-key"
#: How long a page may take to show a change the worker made (the fragments poll every 2 s).
SEEN_WITHIN_MS = 20_000


class Site:
    """The running app, its URL, and a way to start runs over its API."""

    def __init__(self, url: str, stack: Stack, peer: HttpPeer) -> None:
        self.url, self.stack, self.peer = url, stack, peer
        self.api = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10
        )

    def run(self, definition: dict[str, Any]) -> str:
        saved = self.api.put(f"/api/workflows/{definition['workflow_id']}", json=definition)
        assert saved.status_code in (200, 201), saved.text
        started = self.api.post(
            "/api/workflow/execute", json={"workflow_id": definition["workflow_id"], "input": {}}
        )
        assert started.status_code == 202, started.text
        return str(started.json()["run_id"])

    def status(self, run_id: str) -> str:
        return str(self.api.get(f"/api/runs/{run_id}").json()["status"])

    def wait_until_finished(self, run_id: str) -> str:
        finished = ("succeeded", "failed", "cancelled")
        return str(
            self.stack.wait_for(
                lambda: (status := self.status(run_id)) in finished and status,
                what=f"run {run_id} to finish",
            )
        )


@pytest.fixture(scope="module")
def site(
    postgres_url: str,
    redis_url: str,
    http_peer: HttpPeer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    """A worker and gunicorn of this module alone: their own database and broker, so no other
    stack's worker takes these runs."""
    with (
        own_database(postgres_url, "ui") as database_url,
        empty_redis_database(redis_url) as broker_url,
    ):
        env = {**os.environ, **STACK_ENV, "DATABASE_URL": database_url, "REDIS_URL": broker_url}
        engine = make_engine(database_url)
        stack = Stack(env, make_session_factory(engine), tmp_path_factory.mktemp("ui-stack"))
        try:
            stack.start_worker()
            keys = {"DUALMCP_API_KEYS": f"admin:{ADMIN_KEY},read:{READ_KEY}"}
            with gunicorn(stack, keys) as url:
                site = Site(url, stack, http_peer)
                yield site
                site.api.close()
        finally:
            stack.stop()
            engine.dispose()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("DUALMCP_SCREENSHOTS_DIR")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def lead_follow_up(peer: HttpPeer) -> dict[str, Any]:
    """Fetch a lead, text it when hot, email it otherwise, then note it: the path taken and a
    skipped branch show on the graph."""
    route = f"/{unique_id('crm')}"
    peer.reply(route, json={"name": "Ada", "score": 91})
    return {
        "workflow_id": unique_id("lead-follow-up"),
        "name": "Lead follow-up",
        "nodes": [
            {
                "id": "fetch",
                "type": "data_fetch",
                "params": {"url": peer.url + route},
                "next": "check",
            },
            {
                "id": "check",
                "type": "conditional",
                "params": {"condition": "nodes.fetch.json.score >= 80"},
                "then": "sms",
                "else": "email",
            },
            {
                "id": "sms",
                "type": "twilio_sms",
                "params": {"to": "+15550100", "body": "Hi {{ nodes.fetch.json.name }}!"},
                "next": "notify",
            },
            {
                "id": "email",
                "type": "email_send",
                "params": {"to": "lead@example.com", "subject": "Welcome", "body": "Hello"},
                "next": "notify",
            },
            {
                "id": "notify",
                "type": "transform",
                "params": {"values": {"lead": "{{ nodes.fetch.json.name }}"}},
            },
        ],
    }


def fetch_then_note(url: str) -> dict[str, Any]:
    return {
        "workflow_id": unique_id("fetch-then-note"),
        "name": "Fetch, then note",
        "nodes": [
            {"id": "fetch", "type": "data_fetch", "params": {"url": url}, "next": "note"},
            {
                "id": "note",
                "type": "transform",
                "params": {"values": {"ok": "{{ nodes.fetch.json.ok }}"}},
            },
        ],
    }


def log_in(page: Page, site: Site, key: str, path: str = "/ui/") -> None:
    """Open `path` with no key: the page sends us to the login page, and back after it."""
    page.goto(site.url + path)
    page.wait_for_url(re.compile(r"/ui/login\?next="))
    page.fill("#api-key", key)
    page.click("form#login button[type=submit]")
    page.wait_for_url(f"**{path}")


def node(page: Page, node_id: str) -> Any:
    return page.locator(f'details[data-node-id="{node_id}"]')


def test_a_user_logs_in_sees_the_runs_and_every_node_of_one(page: Page, site: Site) -> None:
    run_id = site.run(lead_follow_up(site.peer))
    assert site.wait_until_finished(run_id) == "succeeded"
    log_in(page, site, ADMIN_KEY)
    row = page.locator(f'tr[data-run-id="{run_id}"]')
    expect(row).to_have_attribute("data-status", "succeeded")
    expect(page.locator(".scope")).to_have_text("admin key")
    row.locator("a").first.click()
    page.wait_for_url(f"**/ui/runs/{run_id}")
    expect(page.locator("#run")).to_have_attribute("data-run-status", "succeeded")
    expected = {
        "fetch": "succeeded",
        "check": "succeeded",
        "sms": "succeeded",
        "email": "skipped",
        "notify": "succeeded",
    }
    for node_id, status in expected.items():
        expect(node(page, node_id)).to_have_attribute("data-status", status)
        expect(page.locator(f'[data-graph-node="{node_id}"]')).to_have_attribute(
            "data-status", status
        )
    taken = page.locator("path.edge.taken").evaluate_all("paths => paths.map(p => p.dataset.edge)")
    assert sorted(taken) == ["check-sms", "fetch-check", "sms-notify"]
    node(page, "sms").locator("summary").click()
    expect(node(page, "sms").locator("pre").last).to_contain_text('"backend": "outbox"')


def test_a_running_run_changes_on_the_page_without_a_reload(page: Page, site: Site) -> None:
    route = f"/{unique_id('slow')}"
    site.peer.reply(route, json={"ok": True}, delay_s=4)
    run_id = site.run(fetch_then_note(site.peer.url + route))
    log_in(page, site, READ_KEY, f"/ui/runs/{run_id}")
    expect(node(page, "fetch")).to_have_attribute("data-status", "running", timeout=SEEN_WITHIN_MS)
    expect(node(page, "note")).to_have_attribute("data-status", "not_started")
    page.evaluate("window.notReloaded = true")
    run = page.locator("#run")
    expect(run).to_have_attribute("data-run-status", "succeeded", timeout=SEEN_WITHIN_MS)
    expect(node(page, "note")).to_have_attribute("data-status", "succeeded")
    assert page.evaluate("window.notReloaded === true")
    expect(run).not_to_have_attribute("hx-trigger", "every 2s")


def test_an_admin_retries_a_failed_run_from_the_page(page: Page, site: Site) -> None:
    route = f"/{unique_id('flaky')}"
    site.peer.reply(route, json={"ok": True}, fail_times=1, fail_status=500)
    run_id = site.run(fetch_then_note(site.peer.url + route))
    assert site.wait_until_finished(run_id) == "failed"
    log_in(page, site, ADMIN_KEY, f"/ui/runs/{run_id}")
    expect(node(page, "fetch")).to_have_attribute("data-status", "failed")
    page.get_by_role("button", name="Retry from the failed node").click()
    expect(page.locator("#run")).to_have_attribute(
        "data-run-status", "succeeded", timeout=SEEN_WITHIN_MS
    )
    expect(node(page, "fetch")).to_have_attribute("data-status", "succeeded")
    assert site.status(run_id) == "succeeded"


def test_a_read_key_sees_a_failed_run_but_no_buttons(page: Page, site: Site) -> None:
    route = f"/{unique_id('broken')}"
    site.peer.reply(route, status=500)
    run_id = site.run(fetch_then_note(site.peer.url + route))
    assert site.wait_until_finished(run_id) == "failed"
    log_in(page, site, READ_KEY, f"/ui/runs/{run_id}")
    expect(page.locator("#run")).to_have_attribute("data-run-status", "failed")
    expect(page.locator(".run-error")).to_be_visible()
    expect(page.locator("button[data-post]")).to_have_count(0)
    expect(page.locator(".scope")).to_have_text("read key")


def test_the_pages_fit_a_laptop_and_a_phone(page: Page, site: Site, screenshots: Path) -> None:
    """At 1280x800 and 390x844 nothing but a table's own box scrolls sideways; the runs page
    and a run page are saved as screenshots."""
    run_id = site.run(lead_follow_up(site.peer))
    site.wait_until_finished(run_id)
    log_in(page, site, ADMIN_KEY)
    expect(page.locator(f'tr[data-run-id="{run_id}"]')).to_be_visible()
    page.screenshot(path=str(screenshots / "runs.png"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    page.goto(f"{site.url}/ui/runs/{run_id}")
    expect(page.locator("#run")).to_have_attribute("data-run-status", "succeeded")
    page.screenshot(path=str(screenshots / "run.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/ui/", f"/ui/runs/{run_id}"):
        page.goto(site.url + path)
        expect(page.locator("section.fragment")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
