#!/usr/bin/env bash
# Make sure the services the test suite talks to are up on loopback, installing them if needed.
#
# Why: the tests use real PostgreSQL and real Redis (tests/), and CI may run on a
# fresh machine where only python3/pip/gcc exist. This script is idempotent: when both
# services already answer it only checks and exits 0 within a second. It never skips
# silently: if a service still is not reachable at the end it exits non-zero saying which.
#
#   PostgreSQL  127.0.0.1:5432, role "postgres" without password over TCP, database "test"
#               (tests: postgresql://postgres@127.0.0.1:5432/test)
#   Redis       127.0.0.1:6379, no persistence (tests: redis://127.0.0.1:6379/0)
#   RabbitMQ    127.0.0.1:5672, user guest/guest (tests: amqp://guest:guest@127.0.0.1:5672//);
#               RabbitMQ lets guest log in from loopback only, which is all we need
#
# Installing uses apt-get (Debian/Ubuntu) non-interactively and needs root (or passwordless
# sudo). Only loopback addresses are bound or trusted.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# Loopback only. The ports can be overridden (e.g. to try this script beside running services).
PG_HOST=127.0.0.1
PG_PORT=${ETIMS_CI_PG_PORT:-5432}
PG_DB="test"
REDIS_HOST=127.0.0.1
REDIS_PORT=${ETIMS_CI_REDIS_PORT:-6379}
RABBIT_HOST=127.0.0.1
RABBIT_PORT=${ETIMS_CI_RABBIT_PORT:-5672}
# RabbitMQ (an Erlang VM plus plugins) takes far longer to boot than the others.
RABBIT_WAIT_S=90
WAIT_S=30

log() { printf 'ensure-services: %s\n' "$*" >&2; }
die() {
    printf 'ensure-services: ERROR: %s\n' "$*" >&2
    exit 1
}

# Run a command as root: directly when we are root, else through passwordless sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "need root (or passwordless sudo) to run: $* -- start the service yourself or rerun as root"
    fi
}

# Run a command as the postgres OS user (peer auth on the local socket works for it).
as_postgres() {
    if [ "$(id -un)" = postgres ]; then
        "$@"
    elif [ "$(id -u)" -eq 0 ] && command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        as_root su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "cannot install $* automatically (no apt-get); install and start it, then rerun"
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# python3 is the one tool every target machine has; use it for the probes.
tcp_open() {
    python3 - "$1" "$2" <<'EOF'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
EOF
}

redis_pings() {
    python3 - "$1" "$2" <<'EOF'
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        sys.exit(0 if s.recv(64).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
EOF
}

# wait_for <description> <command...>: poll up to WAIT_S seconds.
wait_for() {
    local what=$1
    shift
    local i
    for ((i = 0; i < WAIT_S * 5; i++)); do
        if "$@"; then return 0; fi
        sleep 0.2
    done
    log "$what: still not reachable after ${WAIT_S}s"
    return 1
}

# ---------------------------------------------------------------------------- PostgreSQL

pg_bin_version() {
    # Highest installed server version, e.g. 15 (empty when no server is installed).
    find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null |
        sort -V | tail -n 1 || true
}

pg_cluster_version() {
    find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null |
        sort -V | tail -n 1 || true
}

pg_start() {
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(pg_bin_version)" ]; then
        apt_install postgresql
    fi
    # The package's postinst may have started it already.
    if tcp_open "$PG_HOST" "$PG_PORT"; then return 0; fi
    local ver
    ver=$(pg_cluster_version)
    if [ -n "$ver" ] && [ -d "/etc/postgresql/$ver/main" ]; then
        log "starting PostgreSQL cluster $ver/main"
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start ||
            log "pg_ctlcluster start failed (see /var/log/postgresql/postgresql-$ver-main.log)"
    else
        ver=$(pg_bin_version)
        [ -n "$ver" ] || die "PostgreSQL server binaries not found after install"
        log "creating and starting PostgreSQL cluster $ver/main"
        as_root pg_createcluster "$ver" main --start ||
            log "pg_createcluster failed"
    fi
}

pg_connects() {
    psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -w -d postgres -Atqc 'select 1' >/dev/null 2>&1
}

pg_trust_loopback() {
    # Only when the postgres role cannot connect over TCP without a password: trust loopback
    # (127.0.0.1/32 and ::1/128 only), first in the file because the first matching line wins.
    local hba ver
    hba=$(as_postgres psql -Atqc 'show hba_file' 2>/dev/null || true)
    if [ -z "$hba" ]; then
        ver=$(pg_cluster_version)
        hba="/etc/postgresql/$ver/main/pg_hba.conf"
    fi
    as_root test -f "$hba" || die "cannot find pg_hba.conf (looked at '$hba')"
    log "trusting loopback TCP connections in $hba"
    local tmp
    tmp=$(mktemp)
    {
        echo "# etims-relay ensure-services.sh: passwordless loopback for the test suite"
        echo "host    all    all    127.0.0.1/32    trust"
        echo "host    all    all    ::1/128         trust"
        as_root cat "$hba"
    } >"$tmp"
    as_root cp "$tmp" "$hba"
    rm -f "$tmp"
    if ! as_postgres psql -Atqc 'select pg_reload_conf()' >/dev/null 2>&1; then
        ver=$(pg_cluster_version)
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
    fi
    sleep 0.5
}

ensure_postgres() {
    if ! tcp_open "$PG_HOST" "$PG_PORT"; then
        log "PostgreSQL not accepting on $PG_HOST:$PG_PORT"
        pg_start
        wait_for "PostgreSQL on $PG_HOST:$PG_PORT" tcp_open "$PG_HOST" "$PG_PORT" ||
            die "PostgreSQL is not accepting connections on $PG_HOST:$PG_PORT"
    fi
    command -v psql >/dev/null 2>&1 || apt_install postgresql-client
    if ! pg_connects; then
        pg_trust_loopback
        wait_for "PostgreSQL login as postgres" pg_connects ||
            die "role 'postgres' cannot connect to $PG_HOST:$PG_PORT without a password"
    fi
    local exists
    exists=$(psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -w -d postgres -Atqc \
        "select 1 from pg_database where datname = '$PG_DB'") ||
        die "cannot query databases on $PG_HOST:$PG_PORT"
    if [ "$exists" != 1 ]; then
        log "creating database $PG_DB"
        createdb -h "$PG_HOST" -p "$PG_PORT" -U postgres -w "$PG_DB" ||
            die "could not create database $PG_DB"
    fi
    log "PostgreSQL ok on $PG_HOST:$PG_PORT (database $PG_DB)"
}

# ---------------------------------------------------------------------------------- Redis

ensure_redis() {
    if redis_pings "$REDIS_HOST" "$REDIS_PORT"; then
        log "Redis ok on $REDIS_HOST:$REDIS_PORT"
        return 0
    fi
    log "Redis not answering PING on $REDIS_HOST:$REDIS_PORT"
    if tcp_open "$REDIS_HOST" "$REDIS_PORT"; then
        die "port $REDIS_PORT is taken by something that does not answer Redis PING"
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        apt_install redis-server
        # The package may have started its own instance.
        if wait_for_short_redis; then
            log "Redis ok on $REDIS_HOST:$REDIS_PORT"
            return 0
        fi
    fi
    as_root mkdir -p /var/lib/redis /var/log/redis
    log "starting redis-server on $REDIS_HOST:$REDIS_PORT"
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log ||
        die "redis-server failed to start (see /var/log/redis/ci.log)"
    wait_for "Redis on $REDIS_HOST:$REDIS_PORT" redis_pings "$REDIS_HOST" "$REDIS_PORT" ||
        die "Redis is not answering PING on $REDIS_HOST:$REDIS_PORT (see /var/log/redis/ci.log)"
    log "Redis ok on $REDIS_HOST:$REDIS_PORT"
}

wait_for_short_redis() {
    local i
    for ((i = 0; i < 10; i++)); do
        if redis_pings "$REDIS_HOST" "$REDIS_PORT"; then return 0; fi
        sleep 0.2
    done
    return 1
}

# ------------------------------------------------------------------------------- RabbitMQ

# An AMQP 0-9-1 handshake: send the protocol header, expect Connection.Start (frame type 1,
# class 10, method 10) back. A bare TCP accept is not enough: the listener opens before the
# broker can serve logins.
amqp_answers() {
    python3 - "$1" "$2" <<'EOF'
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        frame = s.recv(11)
        ok = len(frame) >= 11 and frame[0] == 1 and frame[7:11] == b"\x00\x0a\x00\x0a"
        sys.exit(0 if ok else 1)
except OSError:
    sys.exit(1)
EOF
}

# wait_for_amqp: poll up to RABBIT_WAIT_S seconds.
wait_for_amqp() {
    local i
    for ((i = 0; i < RABBIT_WAIT_S * 2; i++)); do
        if amqp_answers "$RABBIT_HOST" "$RABBIT_PORT"; then return 0; fi
        sleep 0.5
    done
    return 1
}

ensure_rabbitmq() {
    if amqp_answers "$RABBIT_HOST" "$RABBIT_PORT"; then
        log "RabbitMQ ok on $RABBIT_HOST:$RABBIT_PORT"
        return 0
    fi
    log "RabbitMQ not answering AMQP on $RABBIT_HOST:$RABBIT_PORT"
    if tcp_open "$RABBIT_HOST" "$RABBIT_PORT"; then
        # Perhaps still booting: give it the whole boot time before calling the port taken.
        wait_for_amqp ||
            die "port $RABBIT_PORT is taken by something that does not answer AMQP"
        log "RabbitMQ ok on $RABBIT_HOST:$RABBIT_PORT"
        return 0
    fi
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        apt_install rabbitmq-server
    fi
    # The package's postinst may have started it (where an init system runs).
    if ! amqp_answers "$RABBIT_HOST" "$RABBIT_PORT"; then
        log "starting rabbitmq-server -detached (slow to boot; waiting up to ${RABBIT_WAIT_S}s)"
        as_root mkdir -p /var/log/rabbitmq /var/lib/rabbitmq
        as_root rabbitmq-server -detached ||
            die "rabbitmq-server failed to start (see /var/log/rabbitmq/)"
    fi
    wait_for_amqp ||
        die "RabbitMQ is not answering AMQP on $RABBIT_HOST:$RABBIT_PORT after ${RABBIT_WAIT_S}s (see /var/log/rabbitmq/)"
    log "RabbitMQ ok on $RABBIT_HOST:$RABBIT_PORT"
}

command -v python3 >/dev/null 2>&1 || die "python3 is required"
ensure_postgres
ensure_redis
ensure_rabbitmq
