"""The system under test, started from nothing and stopped at the end, even on failure.

PostgreSQL and Redis come from .ci/services.sh, on their own ports and state directory so the
bench never touches the test services (55432/56379), with PostgreSQL's durable defaults
(DUALMCP_SERVICES_DURABLE=1, checked again here) and pg_stat_statements for counting
statements. Then `dualmcp db upgrade`, gunicorn, the Celery worker and beat exactly as
docs/operations.md runs them (prefork, acks_late: nothing turned off), the raw-Celery baseline
worker and the durable one (its results in a database of its own), the bare Flask baseline
(bench/flask_baseline.py) and the echo server. Every process gets its own process group, so
stopping it stops its children too.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx
import redis
import sqlalchemy
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from bench import procfs

REPO = Path(__file__).resolve().parents[1]
SERVICES_SH = REPO / ".ci" / "services.sh"
DEFAULT_STATE_DIR = REPO / ".ci" / ".services-bench"
#: Not the test services' 55432/56379; DUALMCP_BENCH_PG_PORT / _REDIS_PORT override them.
DEFAULT_PG_PORT = 55532
DEFAULT_REDIS_PORT = 56479
#: gunicorn's processes, as docs/operations.md runs them (`--workers 4` on a 2-core box), each
#: with app/web/serving.py's worker class and threads.
GUNICORN_WORKERS = 2 * (os.cpu_count() or 1)
GUNICORN_CONF = REPO / "app" / "web" / "gunicorn_conf.py"
#: A fixed Fernet key: the bench stores no credential, but the roles need one to start.
BENCH_ENCRYPTION_KEY = "2bVQk1fO3bq8vJ6i4P3o5e7cY1b0a9X8w7V6u5T4s3Q="
#: PostgreSQL settings the bench insists on: durable commits, and statement counting.
PG_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_preload_libraries": "pg_stat_statements",
}


class BenchError(RuntimeError):
    """The stack could not be brought up (or went down); the message says which part."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:g}s waiting for {what}")


class Process:
    """One long-running child in its own process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            self.argv,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise BenchError(f"{self.name} was never started")
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to the group (a warm shutdown for Celery), SIGKILL if it outstays `timeout`."""
        if self.popen is not None and self.popen.poll() is None:
            _signal_group(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        elif self.popen is not None:
            _signal_group(self.popen.pid, signal.SIGKILL)  # orphans of a dead leader
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"--- {self.log_path}\n" + "\n".join(text)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


class Stack:
    """Everything the scenarios talk to. `start()` then `stop()` (always, in a finally)."""

    def __init__(
        self,
        *,
        state_dir: Path = DEFAULT_STATE_DIR,
        pg_port: int | None = None,
        redis_port: int | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.log_dir = state_dir / "logs"
        self.pg_port = pg_port or int(os.environ.get("DUALMCP_BENCH_PG_PORT", DEFAULT_PG_PORT))
        self.redis_port = redis_port or int(
            os.environ.get("DUALMCP_BENCH_REDIS_PORT", DEFAULT_REDIS_PORT)
        )
        self.extra_env = extra_env or {}
        self.admin_key = "bench-" + secrets.token_urlsafe(16)
        self.web_port = free_port()
        self.web_baseline_port = free_port()
        self.echo_port = free_port()
        hostname = socket.gethostname()
        self.worker_hostname = f"bench@{hostname}"
        self.baseline_hostname = f"baseline@{hostname}"
        self.durable_hostname = f"durable@{hostname}"
        self.database_url = ""
        self.redis_url = ""
        self.processes: dict[str, Process] = {}
        self._services_started = False
        self._engine: Engine | None = None

    # -- addresses -------------------------------------------------------------------------

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def web_baseline_url(self) -> str:
        """bench/flask_baseline.py: bare Flask + gunicorn + send_task, the ingest floor."""
        return f"http://127.0.0.1:{self.web_baseline_port}"

    @property
    def echo_url(self) -> str:
        return f"http://127.0.0.1:{self.echo_port}/ping"

    @property
    def superuser_url(self) -> str:
        """The same database as the `postgres` superuser: the harness's own reads and writes,
        kept apart from the app's statements in pg_stat_statements (it counts per role)."""
        url = make_url(self.database_url).set(username="postgres", password=None)
        return url.render_as_string(hide_password=False)

    @property
    def results_url(self) -> str:
        """bench/celery_durable.py's result backend: a database of its own next to the app's,
        so Celery's tables never share one with ours."""
        url = make_url(self.database_url)
        url = url.set(database=f"{url.database}_celery_results")
        return url.render_as_string(hide_password=False)

    @property
    def app_role(self) -> str:
        return make_url(self.database_url).username or "dualmcp"

    def app_env(self) -> dict[str, str]:
        """The environment of every app process (and of the harness, which publishes too)."""
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "DUALMCP_API_KEYS": f"admin:{self.admin_key}",
            # The echo server is on loopback, which the SSRF guard refuses unless allowed.
            "DUALMCP_HTTP_ALLOWLIST": "127.0.0.1",
            # The roles refuse to start without one (app/startup_checks.py).
            "DUALMCP_ENCRYPTION_KEY": BENCH_ENCRYPTION_KEY,
            "DUALMCP_BENCH_RESULTS_URL": self.results_url,
            **self.extra_env,
        }

    @property
    def engine(self) -> Engine:
        """The harness's superuser engine."""
        if self._engine is None:
            self._engine = sqlalchemy.create_engine(self.superuser_url, pool_size=2)
        return self._engine

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftovers()
        self._start_services()
        self._reset_database()
        redis.Redis.from_url(self.redis_url).flushall()
        env = self.app_env()
        # The harness publishes node messages and inspects workers through the same broker.
        os.environ.update(
            {k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "DUALMCP_BENCH_RESULTS_URL")}
        )
        from app.config import get_settings
        from app.web import serving

        get_settings.cache_clear()
        python = sys.executable
        self._add("echo", [python, "-m", "bench.echo_server", f"--port={self.echo_port}"], env)
        # The project's gunicorn settings module, when it has one, as ops would load it.
        config = ["-c", "python:app.web.gunicorn_conf"] if GUNICORN_CONF.exists() else []
        self._add(
            "web",
            [
                python,
                "-m",
                "gunicorn",
                *config,
                "app.web:create_app()",
                f"--bind=127.0.0.1:{self.web_port}",
                f"--workers={GUNICORN_WORKERS}",
            ],
            env,
        )
        self._add(
            "web_baseline",
            [
                python,
                "-m",
                "gunicorn",
                "bench.flask_baseline:app",
                f"--bind=127.0.0.1:{self.web_baseline_port}",
                f"--workers={GUNICORN_WORKERS}",
                *serving.gunicorn_flags(),  # the worker class ours runs, or the floor is unfair
            ],
            env,
        )
        celery = [python, "-m", "celery"]
        worker_flags = ["worker", "--loglevel=INFO", "--pool=prefork"]
        self._add(
            "worker",
            [*celery, "-A", "app.tasks", *worker_flags, f"--hostname={self.worker_hostname}"],
            env,
        )
        self._add(
            "beat",
            [
                *celery,
                "-A",
                "app.tasks",
                "beat",
                "--loglevel=INFO",
                f"--schedule={self.state_dir / 'beat-schedule'}",
            ],
            env,
        )
        self._add(
            "baseline",
            [
                *celery,
                "-A",
                "bench.celery_baseline",
                *worker_flags,
                f"--hostname={self.baseline_hostname}",
            ],
            env,
        )
        self._add(
            "durable",
            [
                *celery,
                "-A",
                "bench.celery_durable",
                *worker_flags,
                f"--hostname={self.durable_hostname}",
            ],
            env,
        )
        self._wait_ready()

    def _add(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        process = Process(name, argv, env, self.log_dir)
        self.processes[name] = process
        process.start()
        self._record_started()

    # A run killed with SIGKILL cannot stop its children; the next run stops them, by the pids
    # this file recorded, and only if each still runs the command line it was started with.
    @property
    def _started_file(self) -> Path:
        return self.state_dir / "started.json"

    def _record_started(self) -> None:
        started = {str(p.pid): p.argv for p in self.processes.values() if p.popen is not None}
        self._started_file.write_text(json.dumps(started))

    def _stop_leftovers(self) -> None:
        try:
            started = json.loads(self._started_file.read_text())
        except (OSError, ValueError):
            return
        for pid, argv in started.items():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
            except OSError:
                continue
            if [part.decode(errors="replace") for part in cmdline] == argv:
                print(f"bench: stopping a leftover of an earlier run: {' '.join(argv)[:80]}")
                _signal_group(int(pid), signal.SIGKILL)
        self._started_file.unlink(missing_ok=True)

    def _services(self, command: str, timeout: float = 600) -> str:
        env = {
            **os.environ,
            "DUALMCP_TEST_PG_PORT": str(self.pg_port),
            "DUALMCP_TEST_REDIS_PORT": str(self.redis_port),
            "DUALMCP_SERVICES_DIR": str(self.state_dir / "services"),
            "DUALMCP_SERVICES_DURABLE": "1",
        }
        done = subprocess.run(
            [str(SERVICES_SH), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,  # the first start may apt-get install PostgreSQL and Redis
        )
        if done.returncode != 0:
            raise BenchError(f".ci/services.sh {command} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def _start_services(self) -> None:
        self._services_started = True
        self._services("start")
        for line in self._services("env").splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            if name == "DATABASE_URL":
                self.database_url = value
            elif name == "REDIS_URL":
                self.redis_url = value
        if not (self.database_url and self.redis_url):
            raise BenchError(".ci/services.sh env printed no DATABASE_URL/REDIS_URL")
        if self._apply_pg_settings():
            self._services("stop")
            self._services("start")  # shared_preload_libraries needs a restart
            if self._apply_pg_settings():
                raise BenchError(f"PostgreSQL did not take the settings {PG_SETTINGS}")

    def _admin_engine(self, database: str = "postgres") -> Engine:
        url = make_url(self.superuser_url).set(database=database)
        return sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)

    def _apply_pg_settings(self) -> bool:
        """ALTER SYSTEM what differs from PG_SETTINGS; True when a restart is needed."""
        engine = self._admin_engine()
        try:
            with engine.connect() as connection:
                current = {
                    name: connection.execute(sqlalchemy.text(f"SHOW {name}")).scalar()
                    for name in PG_SETTINGS
                }
                wrong = {name: v for name, v in PG_SETTINGS.items() if current[name] != v}
                for name, value in wrong.items():
                    connection.execute(sqlalchemy.text(f"ALTER SYSTEM SET {name} = '{value}'"))
                if wrong:
                    connection.execute(sqlalchemy.text("SELECT pg_reload_conf()"))
        finally:
            engine.dispose()
        return "shared_preload_libraries" in wrong

    def _reset_database(self) -> None:
        """A fresh database each run (so earlier runs do not bloat the tables), migrated by
        `dualmcp db upgrade` as ops run it; and an empty one for the durable baseline's results
        (Celery creates its tables there)."""
        name = make_url(self.database_url).database
        results = make_url(self.results_url).database
        engine = self._admin_engine()
        try:
            with engine.connect() as connection:
                for database in (name, results):
                    connection.execute(
                        sqlalchemy.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                    )
                    connection.execute(
                        sqlalchemy.text(f'CREATE DATABASE "{database}" OWNER "{self.app_role}"')
                    )
        finally:
            engine.dispose()
        engine = self._admin_engine(name or "postgres")
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text("CREATE EXTENSION pg_stat_statements"))
        finally:
            engine.dispose()
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "db", "upgrade"],
            cwd=REPO,
            env=self.app_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise BenchError(f"dualmcp db upgrade failed:\n{done.stderr[-2000:]}")

    def _wait_ready(self) -> None:
        from app.tasks import celery
        from bench.celery_baseline import app as baseline
        from bench.celery_durable import app as durable

        def alive_or_fail(name: str) -> None:
            if not self.processes[name].alive():
                raise BenchError(f"{name} exited during start-up\n{self.processes[name].tail()}")

        def answers(name: str, url: str) -> Callable[[], bool]:
            def check() -> bool:
                alive_or_fail(name)
                try:
                    return httpx.get(url, timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            return check

        def pings(app: Any, name: str, hostname: str) -> Callable[[], bool]:
            def check() -> bool:
                alive_or_fail(name)
                return bool(app.control.ping(destination=[hostname], timeout=0.5))

            return check

        wait_until(answers("echo", self.echo_url), 15, "the echo server")
        wait_until(answers("web", f"{self.web_url}/healthz"), 60, "gunicorn")
        baseline_health = f"{self.web_baseline_url}/healthz"
        wait_until(answers("web_baseline", baseline_health), 60, "the Flask baseline's gunicorn")
        wait_until(pings(celery, "worker", self.worker_hostname), 90, "the Celery worker")
        wait_until(pings(baseline, "baseline", self.baseline_hostname), 90, "the baseline worker")
        wait_until(pings(durable, "durable", self.durable_hostname), 90, "the durable worker")
        alive_or_fail("beat")

    # -- measuring -------------------------------------------------------------------------

    def cpu_roots(self) -> dict[str, int]:
        """Root pid of each part of the system under test (and of the echo server)."""
        roots = {name: process.pid for name, process in self.processes.items()}
        with self.engine.connect() as connection:
            backend = connection.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar_one()
        postmaster = procfs.parent_pid(int(backend))
        if postmaster:
            roots["postgres"] = postmaster
        info: Any = redis.Redis.from_url(self.redis_url).info("server")
        roots["redis"] = int(info["process_id"])
        return roots

    def check_alive(self) -> list[str]:
        """Names of processes that died while the bench ran."""
        return [name for name, process in self.processes.items() if not process.alive()]

    # -- stop ------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop everything started, in reverse order; return what went wrong (never raise)."""
        problems: list[str] = []
        for name in reversed(list(self.processes)):
            try:
                self.processes[name].stop()
            except Exception as exc:
                problems.append(f"stopping {name}: {exc}")
        self._started_file.unlink(missing_ok=True)
        if self._engine is not None:
            self._engine.dispose()
        if self._services_started:
            try:
                self._services("stop", timeout=120)
            except Exception as exc:
                problems.append(f"stopping PostgreSQL/Redis: {exc}")
        return problems
