#!/usr/bin/env bash
# Throwaway PostgreSQL + Redis for the test suite.
#
#   .ci/services.sh start    start both (idempotent; reuses running instances)
#   .ci/services.sh stop     stop both (safe when nothing runs)
#   .ci/services.sh env      print the export lines for DATABASE_URL / REDIS_URL
#   .ci/services.sh status   say what is running
#   .ci/services.sh clean    stop, then delete all state
#   .ci/services.sh tools    install the other tools the suite runs (docker-compose, promtool, and
#                            Debian's chromium for the browser tests of tests/ui)
#   .ci/services.sh restart postgres|redis   stop and start one of them (fault tests)
#
# Both listen on 127.0.0.1 only, on non-default ports so they never clash with a
# system PostgreSQL/Redis.  Everything lives in a state directory (default
# .ci/.services/ in the repo, gitignored).  Knobs:
#
#   DUALMCP_TEST_PG_PORT      PostgreSQL port          (default 55432)
#   DUALMCP_TEST_REDIS_PORT   Redis port               (default 56379)
#   DUALMCP_SERVICES_DIR      state directory          (default <repo>/.ci/.services)
#   DUALMCP_SERVICES_TIMEOUT  seconds to wait for each service to answer (default 30)
#   DUALMCP_SERVICES_DURABLE  1: keep PostgreSQL's durable defaults (for the benchmark)
#
# Missing binaries are installed with apt-get (Debian/Ubuntu).  PostgreSQL's
# initdb refuses to run as root, so when we are root the server runs as the
# `postgres` system user (created if missing).
#
# The database is tuned for speed, not durability (fsync=off etc.): never point
# this at data you care about.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

PG_PORT="${DUALMCP_TEST_PG_PORT:-55432}"
REDIS_PORT="${DUALMCP_TEST_REDIS_PORT:-56379}"
STATE_DIR="${DUALMCP_SERVICES_DIR:-$REPO_ROOT/.ci/.services}"
TIMEOUT="${DUALMCP_SERVICES_TIMEOUT:-30}"

DB_NAME=dualmcp_test
DB_USER=dualmcp
DB_PASSWORD=dualmcp
PG_SUPERUSER=postgres   # name of the bootstrap superuser created by initdb
PG_OS_USER=postgres     # OS user that runs the server when we are root

REDIS_DIR="$STATE_DIR/redis"
REDIS_PIDFILE="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"

# PG_DIR holds data/, run/ (unix socket) and postgres.log; see resolve_pg_dir.
PG_DIR=""
PG_BIN=""

log() { echo "services: $*" >&2; }
die() { echo "services: ERROR: $*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# ---------------------------------------------------------------------------
# Package installation
# ---------------------------------------------------------------------------

APT_UPDATED=0
apt_install() {
    local sudo=()
    if ! is_root; then
        command -v sudo >/dev/null || die "need to install $* but am not root and sudo is missing"
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null || die "need to install $* but apt-get is not available; install it yourself"
    if [[ "$APT_UPDATED" -eq 0 ]]; then
        log "apt-get update"
        "${sudo[@]}" apt-get update -q >&2
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

# Find the directory with initdb/pg_ctl/pg_isready/psql. Debian keeps them in
# /usr/lib/postgresql/<version>/bin and /usr/bin/psql is only a wrapper, so we
# resolve pg_ctl's real location and use the sibling binaries from there.
find_pg_bin() {
    local pg_ctl dir
    if pg_ctl="$(command -v pg_ctl)"; then
        dir="$(dirname "$(readlink -f "$pg_ctl")")"
        if [[ -x "$dir/initdb" && -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    fi
    # Highest installed version wins.
    for dir in $(printf "%s\n" /usr/lib/postgresql/*/bin | sort -rV); do
        if [[ -x "$dir/pg_ctl" && -x "$dir/initdb" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

ensure_pg_installed() {
    if ! PG_BIN="$(find_pg_bin)"; then
        apt_install postgresql
        PG_BIN="$(find_pg_bin)" || die "PostgreSQL installed but initdb/pg_ctl still not found"
    fi
    # pg_isready/psql normally sit next to pg_ctl; fall back to PATH.
    [[ -x "$PG_BIN/psql" ]] || command -v psql >/dev/null || apt_install postgresql-client
}

ensure_redis_installed() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        apt_install redis-server
    fi
}

pg_tool() {   # pg_tool NAME: path of a PostgreSQL client tool
    if [[ -n "$PG_BIN" && -x "$PG_BIN/$1" ]]; then echo "$PG_BIN/$1"; else command -v "$1"; fi
}

# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

# Run a command as the OS user that owns the cluster. As root that is the
# `postgres` user; cd to the PG dir first so it never starts in a cwd it cannot
# read (e.g. /root).
as_pg() {
    if is_root; then
        (cd "$PG_DIR" && runuser -u "$PG_OS_USER" -- "$@")
    else
        "$@"
    fi
}

ensure_pg_os_user() {
    is_root || return 0
    if ! id "$PG_OS_USER" >/dev/null 2>&1; then
        log "creating system user $PG_OS_USER"
        useradd --system --user-group --no-create-home \
            --home-dir /var/lib/postgresql --shell /bin/bash "$PG_OS_USER"
    fi
}

# Where the cluster lives. Normally $STATE_DIR/pg. When we are root and the
# repo sits somewhere the postgres user cannot reach (e.g. a clone under
# /root, which is mode 700), fall back to a per-checkout directory in /tmp.
# The choice is deterministic so start/stop/clean always agree.
resolve_pg_dir() {
    PG_DIR="$STATE_DIR/pg"
    is_root || return 0
    id "$PG_OS_USER" >/dev/null 2>&1 || return 0   # user created later; can't test yet
    mkdir -p "$STATE_DIR"
    if ! runuser -u "$PG_OS_USER" -- test -x "$STATE_DIR" 2>/dev/null; then
        local key
        key="$(printf '%s' "$STATE_DIR" | cksum | cut -d' ' -f1)"
        PG_DIR="/tmp/dualmcp-pg-$key"
        [[ "${1:-}" != verbose ]] \
            || log "user $PG_OS_USER cannot reach $STATE_DIR; keeping the PostgreSQL cluster in $PG_DIR"
    fi
}

pg_data() { echo "$PG_DIR/data"; }

pg_running() {   # our own cluster's postmaster is alive
    [[ -f "$(pg_data)/PG_VERSION" ]] || return 1
    [[ -n "$PG_BIN" ]] || return 1
    as_pg "$PG_BIN/pg_ctl" status -D "$(pg_data)" >/dev/null 2>&1
}

pg_answers() {
    "$(pg_tool pg_isready)" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPERUSER" -d postgres -t 2 >/dev/null 2>&1
}

pg_init() {
    local data run_dir socket_dirs
    data="$(pg_data)"
    run_dir="$PG_DIR/run"

    # A data dir without PG_VERSION is a half-finished initdb: start over.
    if [[ -d "$data" && ! -f "$data/PG_VERSION" ]]; then
        log "removing incomplete PostgreSQL data dir $data"
        rm -rf "$data"
    fi

    mkdir -p "$PG_DIR" "$run_dir"
    if is_root; then
        chown "$PG_OS_USER:" "$PG_DIR" "$run_dir"
    fi
    [[ -f "$data/PG_VERSION" ]] && return 0

    log "initdb $data"
    as_pg "$PG_BIN/initdb" -D "$data" -U "$PG_SUPERUSER" \
        --auth=trust --encoding=UTF8 --no-locale >"$PG_DIR/initdb.log" 2>&1 \
        || { tail -n 20 "$PG_DIR/initdb.log" >&2; die "initdb failed (log: $PG_DIR/initdb.log)"; }

    # Unix socket paths are limited to ~107 bytes; skip the socket if the
    # state dir is too deep (we only ever connect over TCP anyway).
    socket_dirs="$run_dir"
    if (( ${#run_dir} > 90 )); then
        log "state dir path too long for a unix socket; TCP only"
        socket_dirs=""
    fi

    # Test-only settings: fast and forgetful, unless DUALMCP_SERVICES_DURABLE=1 (the
    # benchmark: production durability, so nothing is turned off to look fast). The port is
    # passed at start time so DUALMCP_TEST_PG_PORT can change without re-initialising.
    local durability="fsync = off
synchronous_commit = off
full_page_writes = off"
    if [[ "${DUALMCP_SERVICES_DURABLE:-0}" == 1 ]]; then
        durability="# durable: PostgreSQL's defaults (fsync, synchronous_commit, full_page_writes on)"
    fi
    as_pg tee -a "$data/postgresql.conf" >/dev/null <<EOF

# --- dualmcp test settings (.ci/services.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$socket_dirs'
max_connections = 200
$durability
EOF
}

pg_start() {
    ensure_pg_installed
    ensure_pg_os_user
    resolve_pg_dir verbose

    if pg_running; then
        log "PostgreSQL already running ($(pg_data))"
    else
        pg_init
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        as_pg "$PG_BIN/pg_ctl" start -D "$(pg_data)" -l "$PG_DIR/postgres.log" \
            -o "-p $PG_PORT" -w -t "$TIMEOUT" >/dev/null \
            || { tail -n 20 "$PG_DIR/postgres.log" >&2 || true
                 die "PostgreSQL did not start on 127.0.0.1:$PG_PORT (log: $PG_DIR/postgres.log)"; }
    fi

    wait_for "PostgreSQL" pg_answers \
        || { tail -n 20 "$PG_DIR/postgres.log" >&2 || true
             die "PostgreSQL is not answering on 127.0.0.1:$PG_PORT after ${TIMEOUT}s (log: $PG_DIR/postgres.log)"; }

    pg_create_db
}

# Create the role and the database if they are missing (cheap, every start).
pg_create_db() {
    local psql=("$(pg_tool psql)" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPERUSER")

    "${psql[@]}" -d postgres >/dev/null <<EOF
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASSWORD';
  END IF;
END
\$\$;
EOF
    if [[ "$("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]]; then
        log "creating database $DB_NAME owned by $DB_USER"
        "${psql[@]}" -d postgres -c "CREATE DATABASE $DB_NAME OWNER $DB_USER" >/dev/null
    fi
}

pg_stop() {
    PG_BIN="$(find_pg_bin)" || PG_BIN=""   # never install anything just to stop
    resolve_pg_dir
    local pidfile
    pidfile="$(pg_data)/postmaster.pid"

    if pg_running; then
        log "stopping PostgreSQL"
        as_pg "$PG_BIN/pg_ctl" stop -D "$(pg_data)" -m fast -w -t "$TIMEOUT" >/dev/null
    elif [[ -z "$PG_BIN" && -f "$pidfile" ]]; then
        # No pg_ctl around: SIGINT is PostgreSQL's "fast" shutdown.
        log "stopping PostgreSQL (SIGINT to postmaster)"
        kill -INT "$(head -n 1 "$pidfile")" 2>/dev/null || true
    else
        log "PostgreSQL not running"
    fi
}

# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------

redis_pid() {   # pid from our pidfile if that process is alive
    local pid
    [[ -f "$REDIS_PIDFILE" ]] || return 1
    pid="$(cat "$REDIS_PIDFILE")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# True when the Redis answering on our port is the one we started (so we never
# reuse or shut down somebody else's server that happens to use the port).
redis_is_ours() {
    local pid served_pid
    pid="$(redis_pid)" || return 1
    served_pid="$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info server 2>/dev/null \
        | tr -d '\r' | sed -n 's/^process_id://p')"
    [[ "$served_pid" == "$pid" ]]
}

redis_start() {
    ensure_redis_installed
    mkdir -p "$REDIS_DIR"

    if redis_is_ours; then
        log "Redis already running (pid $(redis_pid))"
        return 0
    fi

    rm -f "$REDIS_PIDFILE"
    log "starting Redis on 127.0.0.1:$REDIS_PORT"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
        --save '' --appendonly no \
        --daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" \
        --dir "$REDIS_DIR" \
        || die "Redis failed to start (log: $REDIS_LOG)"

    wait_for "Redis" redis_is_ours \
        || { tail -n 20 "$REDIS_LOG" >&2 || true
             die "Redis is not answering on 127.0.0.1:$REDIS_PORT after ${TIMEOUT}s (port taken? log: $REDIS_LOG)"; }
}

redis_stop() {
    local pid
    if ! pid="$(redis_pid)"; then
        log "Redis not running"
        rm -f "$REDIS_PIDFILE"
        return 0
    fi
    log "stopping Redis (pid $pid)"
    if command -v redis-cli >/dev/null && redis_is_ours; then
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    else
        kill -TERM "$pid" 2>/dev/null || true
    fi
    # Wait for the process to go away.
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
        (( waited++ < TIMEOUT * 10 )) || die "Redis (pid $pid) did not stop"
        sleep 0.1
    done
    rm -f "$REDIS_PIDFILE"
}

# ---------------------------------------------------------------------------
# Helpers and commands
# ---------------------------------------------------------------------------

# wait_for NAME CHECK...: run CHECK every 0.2s until it succeeds or TIMEOUT.
wait_for() {
    local name="$1"; shift
    local deadline=$(( SECONDS + TIMEOUT ))
    until "$@"; do
        if (( SECONDS >= deadline )); then
            log "$name did not come up within ${TIMEOUT}s"
            return 1
        fi
        sleep 0.2
    done
}

cmd_restart() {
    case "${1:-}" in
        postgres) pg_stop; pg_start ;;
        redis)    redis_stop; redis_start ;;
        *)        usage ;;
    esac
}

cmd_tools() {
    command -v docker-compose >/dev/null || apt_install docker-compose
    # tests/deploy check deploy/prometheus/alerts.yml with promtool (not the server's recommends).
    command -v promtool >/dev/null || apt_install --no-install-recommends prometheus
    # tests/ui drive it with Playwright (`playwright install` cannot download a browser here).
    command -v chromium >/dev/null || apt_install chromium fonts-dejavu-core
    # The bench's scale-out scenario puts workers in network namespaces (ip) behind DNAT (nft).
    command -v ip >/dev/null || apt_install iproute2
    command -v nft >/dev/null || apt_install --no-install-recommends nftables
}

cmd_env() {
    echo "export DATABASE_URL=postgresql+psycopg://$DB_USER:$DB_PASSWORD@127.0.0.1:$PG_PORT/$DB_NAME"
    echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
}

cmd_start() {
    mkdir -p "$STATE_DIR"
    pg_start
    redis_start
    log "ready: PostgreSQL 127.0.0.1:$PG_PORT, Redis 127.0.0.1:$REDIS_PORT"
}

cmd_stop() {
    # Stop both even if the first one fails.
    local rc=0
    redis_stop || rc=1
    pg_stop || rc=1
    return "$rc"
}

cmd_status() {
    PG_BIN="$(find_pg_bin)" || PG_BIN=""
    resolve_pg_dir
    if pg_running; then echo "postgresql: running on 127.0.0.1:$PG_PORT ($(pg_data))"
    else echo "postgresql: stopped"; fi
    if redis_pid >/dev/null; then echo "redis: running on 127.0.0.1:$REDIS_PORT (pid $(redis_pid))"
    else echo "redis: stopped"; fi
}

cmd_clean() {
    cmd_stop
    resolve_pg_dir
    log "removing $STATE_DIR"
    rm -rf "$PG_DIR" "$STATE_DIR"
}

usage() {
    echo "usage: $0 {start|stop|env|status|clean|tools|restart postgres|restart redis}" >&2
    exit 2
}

case "${1:-}" in
    start)  cmd_start ;;
    stop)   cmd_stop ;;
    env)    cmd_env ;;
    status) cmd_status ;;
    clean)  cmd_clean ;;
    tools)  cmd_tools ;;
    restart) cmd_restart "${2:-}" ;;
    *)      usage ;;
esac
