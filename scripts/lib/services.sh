# shellcheck shell=bash
# Throwaway Redis, PostgreSQL and memcached servers, shared by scripts/test and
# scripts/torture. Source it after common.sh. Servers listen on free ports on 127.0.0.1 and
# keep their data in a temp dir; the ORMCACHE_TEST_* variables tell the Python side where
# they are. The caller sets TOOL_PYTHON (free_port runs it) and must trap stop_services on
# EXIT, which stops whatever was started and deletes the temp dir.
#
#   find_service_binaries            sets REDIS_SERVER, PG_BINDIR, MEMCACHED, and MISSING
#                                    (what the Redis + PostgreSQL pair lacks; WITH_PAIR=1
#                                    when nothing)
#   make_service_dir [PREFIX]        the temp dir (PREFIX: ormcache-test)
#   start_redis, start_postgres, start_memcached
#   start_services                   make_service_dir, the pair if WITH_PAIR, memcached
#   stop_services                    idempotent; safe on half-started state

readonly SERVICE_TIMEOUT_TENTHS=300 # 30 s for a server to become ready

# State that stop_services() reads; empty means "not started".
TMP_DIR=""
REDIS_PID=""
PG_DATA=""
MEMCACHED_PID=""

# --- throwaway servers ----------------------------------------------------------------

# Ask the kernel for a port nobody is listening on. There is a small window before the
# server binds it; each server is started right after its port is picked.
free_port() {
    "$TOOL_PYTHON" -c "
import socket
s = socket.socket()
s.bind(('127.0.0.1', 0))
print(s.getsockname()[1])
s.close()
"
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Retry "$@" until it succeeds, or fail after SERVICE_TIMEOUT_TENTHS. When a pid is given,
# stop early if that process has died: its log says why.
wait_until() {
    local pid=$1
    shift
    local i
    for ((i = 0; i < SERVICE_TIMEOUT_TENTHS; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

pg_default_bindir() {
    local initdb
    if initdb=$(command -v initdb); then
        dirname "$(readlink -f "$initdb")"
        return
    fi
    # Debian/Ubuntu keep the server tools off PATH, one dir per major version.
    compgen -G "/usr/lib/postgresql/*/bin" | sort -V | tail -n 1
}

# Decide which servers can be started. Redis and PostgreSQL form one backend pair, so
# they are started together or not at all; MISSING lists what the pair lacks, and the
# caller decides what that means (scripts/test skips the pair, scripts/torture stops).
WITH_PAIR=0
declare -a MISSING=()
find_service_binaries() {
    REDIS_SERVER=${ORMCACHE_REDIS_SERVER-$(command -v redis-server || true)}
    PG_BINDIR=${ORMCACHE_PG_BINDIR-$(pg_default_bindir || true)}
    MEMCACHED=${ORMCACHE_MEMCACHED-$(command -v memcached || true)}

    MISSING=()
    [[ -n $REDIS_SERVER && -x $REDIS_SERVER ]] || MISSING+=("redis-server")
    [[ -n $PG_BINDIR && -x $PG_BINDIR/initdb && -x $PG_BINDIR/pg_ctl ]] ||
        MISSING+=("PostgreSQL server tools (initdb, pg_ctl)")
    # PostgreSQL refuses to run as root; we drop to the postgres user, which must exist.
    if ((EUID == 0)); then
        id -u postgres >/dev/null 2>&1 ||
            MISSING+=("a 'postgres' system user (needed to run PostgreSQL as root)")
        command -v runuser >/dev/null || MISSING+=("runuser (util-linux)")
    fi
    if ((${#MISSING[@]} == 0)); then
        WITH_PAIR=1
    fi
}

# "a, b, c": what find_service_binaries found missing.
missing_services() {
    local what
    what=$(printf '%s, ' "${MISSING[@]}")
    echo "${what%, }"
}

start_redis() {
    local port dir="$TMP_DIR/redis"
    mkdir -p "$dir"
    port=$(free_port)
    # --save ''/--appendonly no: nothing is ever written to disk.
    "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --dir "$dir" >"$dir/redis.log" 2>&1 &
    REDIS_PID=$!
    if ! wait_until "$REDIS_PID" redis_ready "$port"; then
        show_log "$dir/redis.log"
        die "Redis did not start on port $port"
    fi
    export ORMCACHE_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
    log "Redis ready on 127.0.0.1:$port"
}

redis_ready() {
    local port=$1
    if command -v redis-cli >/dev/null; then
        [[ $(redis-cli -h 127.0.0.1 -p "$port" ping) == PONG ]]
    else
        tcp_open "$port"
    fi
}

# Run a PostgreSQL tool as the data dir owner: ourselves, or `postgres` when we are root.
as_pg_owner() {
    if ((EUID == 0)); then
        # cd: the postgres user may not be allowed into the current directory.
        (cd "$TMP_DIR" && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

start_postgres() {
    local port dir="$TMP_DIR/pg"
    mkdir -p "$dir"
    ((EUID == 0)) && chown postgres "$dir"
    if ! as_pg_owner "$PG_BINDIR/initdb" -D "$dir/data" -A trust -U postgres \
        -E UTF8 --locale=C --no-sync >"$TMP_DIR/initdb.log" 2>&1; then
        show_log "$TMP_DIR/initdb.log"
        die "initdb failed"
    fi

    port=$(free_port)
    # Throwaway cluster: TCP on loopback only, socket inside our temp dir (no clash with
    # a system cluster in /var/run/postgresql), durability off for speed.
    cat >>"$dir/data/postgresql.conf" <<EOF

# added by ${0##*/}
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    PG_DATA="$dir/data"
    if ! as_pg_owner "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -l "$dir/postgres.log" \
        -w -t 30 start >/dev/null 2>&1; then
        show_log "$dir/postgres.log"
        die "PostgreSQL did not start on port $port"
    fi
    if [[ -x $PG_BINDIR/pg_isready ]]; then
        wait_until "" "$PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres
    else
        wait_until "" tcp_open "$port"
    fi || {
        show_log "$dir/postgres.log"
        die "PostgreSQL is not accepting connections on port $port"
    }
    export ORMCACHE_TEST_PG_HOST=127.0.0.1
    export ORMCACHE_TEST_PG_PORT=$port
    export ORMCACHE_TEST_PG_USER=postgres
    log "PostgreSQL ready on 127.0.0.1:$port"
}

# memcached is optional: a missing or broken one only skips the memcached tests.
start_memcached() {
    if [[ -z $MEMCACHED || ! -x $MEMCACHED ]]; then
        log "memcached not installed; memcached tests will be skipped"
        return 0
    fi
    local port
    local -a as_user=()
    if ((EUID == 0)); then # memcached refuses to run as root without -u
        if id -u memcache >/dev/null 2>&1; then as_user=(-u memcache); else as_user=(-u nobody); fi
    fi
    port=$(free_port)
    "$MEMCACHED" -l 127.0.0.1 -p "$port" -U 0 "${as_user[@]}" >"$TMP_DIR/memcached.log" 2>&1 &
    MEMCACHED_PID=$!
    if ! wait_until "$MEMCACHED_PID" tcp_open "$port"; then
        show_log "$TMP_DIR/memcached.log"
        warn "memcached did not start; memcached tests will be skipped"
        return 0
    fi
    export ORMCACHE_TEST_MEMCACHED="127.0.0.1:$port"
    log "memcached ready on 127.0.0.1:$port"
}

make_service_dir() {
    local prefix=${1:-ormcache-test}
    # Only ever use the servers we start, never ones left in the caller's environment.
    unset ORMCACHE_TEST_REDIS_URL ORMCACHE_TEST_PG_HOST ORMCACHE_TEST_PG_PORT \
        ORMCACHE_TEST_PG_USER ORMCACHE_TEST_MEMCACHED
    TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/$prefix.XXXXXX")
    # mktemp makes it 0700; the postgres user must be able to reach its data dir inside.
    chmod 755 "$TMP_DIR"
}

start_services() {
    make_service_dir ormcache-test
    if ((WITH_PAIR)); then
        start_redis
        start_postgres
    fi
    start_memcached
}

stop_pid() {
    local pid=$1 i
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Runs on every exit path (trap), so it must never fail and must tolerate half-started
# state: each part only acts if its server was started.
stop_services() {
    set +e
    if [[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]]; then
        # immediate: the data is thrown away anyway, no need for a checkpoint.
        as_pg_owner "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1
        if [[ -f $PG_DATA/postmaster.pid ]]; then
            stop_pid "$(head -n 1 "$PG_DATA/postmaster.pid")"
        fi
    fi
    [[ -n $REDIS_PID ]] && stop_pid "$REDIS_PID"
    [[ -n $MEMCACHED_PID ]] && stop_pid "$MEMCACHED_PID"
    [[ -n $TMP_DIR ]] && rm -rf "$TMP_DIR"
    PG_DATA="" REDIS_PID="" MEMCACHED_PID="" TMP_DIR=""
}

