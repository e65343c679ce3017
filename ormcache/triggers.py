"""Writes made outside Django (PostgreSQL): triggers that NOTIFY, opt-in.

ormcache sees every statement Django sends. Writes it cannot see, from ``psql``, a
cron job, another service, or a trigger of your own, would leave cached reads stale
until their timeout. With ``manage.py ormcache triggers install`` every cached table
gets one statement-level trigger (``AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ...
FOR EACH STATEMENT``) that sends ``NOTIFY <channel>, '<table>'``. PostgreSQL delivers
notifications when the writing transaction commits (and never after a rollback), once
per table per transaction, so a listener (``listener.py``: ``manage.py ormcache
listen``, or a thread) bumps the table's version right after the commit.

Django's own writes are bumped already by ormcache's execute wrapper. Each Django
connection marks its session (``ormcache.origin = 'django'``), and the trigger stays
silent for a statement Django sent itself (``pg_trigger_depth() = 1``); statements that
run *inside* a trigger or a foreign key action (``ON DELETE CASCADE``) still notify,
since ormcache may not know of them.

Settings (``ORMCACHE["TRIGGERS"]``; all keys optional)::

    "TRIGGERS": {
        "databases": ["default"],   # PostgreSQL aliases with triggers and a listener
        "channel": "ormcache",      # the NOTIFY channel
        "listen": False,            # True: a listener thread in every process (see docs)
        "mark_django_sessions": True,  # False under pgbouncer transaction pooling
    }
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import connections, router, transaction

from . import conf

FUNCTION = "ormcache_notify"
TRIGGER = "ormcache_notify"
#: The session setting a Django connection carries so its own statements do not notify.
ORIGIN_SETTING = "ormcache.origin"

DEFAULTS: dict[str, Any] = {
    "databases": ["default"],
    "channel": "ormcache",
    "listen": False,
    "mark_django_sessions": True,
}

_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A statement Django sent itself: ormcache's execute wrapper bumps it already.
    IF pg_trigger_depth() = 1
       AND current_setting('{ORIGIN_SETTING}', true) = 'django' THEN
        RETURN NULL;
    END IF;
    -- Delivered at commit, once per (channel, payload) per transaction.
    PERFORM pg_notify(TG_ARGV[0], TG_TABLE_NAME);
    RETURN NULL;
END
$$
"""


def options() -> dict[str, Any]:
    """``ORMCACHE["TRIGGERS"]`` over the defaults, or None-like {} when it is not set."""
    raw = conf.get_settings().get("TRIGGERS")
    if not isinstance(raw, dict):
        return {}
    return {**DEFAULTS, **{key: value for key, value in raw.items() if key in DEFAULTS}}


def enabled_for(db_alias: str) -> bool:
    found = options()
    return bool(found) and db_alias in found["databases"]


def cached_tables(db_alias: str) -> list[str]:
    """The tables a cached read on ``db_alias`` may depend on: every model whose policy
    leaves caching on (auto-created m2m tables included), that lives in this database."""
    found = set()
    for model in apps.get_models(include_auto_created=True):
        opts = model._meta
        if opts.proxy:
            continue
        if not conf.policy_for(model).enabled:
            continue
        if not router.allow_migrate_model(db_alias, model):
            continue
        found.add(opts.db_table)
    with connections[db_alias].cursor() as cursor:
        existing = set(connections[db_alias].introspection.table_names(cursor))
    return sorted(found & existing)


def _require_postgresql(db_alias: str) -> Any:
    connection = connections[db_alias]
    if connection.vendor != "postgresql":
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"Triggers need PostgreSQL; the database {db_alias!r} is {connection.vendor}."
        )
    return connection


def _quote(connection: Any, name: str) -> str:
    return connection.ops.quote_name(name)


def install(db_alias: str) -> list[str]:
    """Create the function and one trigger per cached table (idempotent); the tables."""
    connection = _require_postgresql(db_alias)
    channel = options().get("channel", DEFAULTS["channel"])
    tables = cached_tables(db_alias)
    with transaction.atomic(using=db_alias), connection.cursor() as cursor:
        cursor.execute(_FUNCTION_SQL)
        for table in tables:
            quoted = _quote(connection, table)
            cursor.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON {quoted}")
            # The channel is a trigger argument: one function serves any channel.
            cursor.execute(
                f"CREATE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                f"ON {quoted} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}"
                f"({_literal(channel)})"
            )
    return tables


def _literal(text: str) -> str:
    """A SQL string literal (CREATE TRIGGER takes no bound parameters)."""
    return "'" + str(text).replace("'", "''") + "'"


def installed_tables(db_alias: str) -> list[str]:
    """Tables that carry ormcache's trigger now."""
    connection = _require_postgresql(db_alias)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = %s AND pg_table_is_visible(c.oid) ORDER BY c.relname",
            [TRIGGER],
        )
        return [row[0] for row in cursor.fetchall()]


def uninstall(db_alias: str) -> list[str]:
    """Drop every ormcache trigger and the function; the tables that had one."""
    connection = _require_postgresql(db_alias)
    tables = installed_tables(db_alias)
    with transaction.atomic(using=db_alias), connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON {_quote(connection, table)}")
        cursor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
    return tables


@dataclass(frozen=True)
class Status:
    db_alias: str
    cached: list[str]
    installed: list[str]

    @property
    def missing(self) -> list[str]:
        """Cached tables without a trigger (writes outside Django go unseen)."""
        return sorted(set(self.cached) - set(self.installed))

    @property
    def extra(self) -> list[str]:
        """Triggers on tables that are no longer cached (harmless; reinstall drops none)."""
        return sorted(set(self.installed) - set(self.cached))


def status(db_alias: str) -> Status:
    return Status(db_alias, cached_tables(db_alias), installed_tables(db_alias))


def mark_django_session(sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
    """connection_created: tell the trigger that this session's statements are Django's."""
    if connection is None or connection.vendor != "postgresql":
        return
    if not enabled_for(connection.alias) or not options()["mark_django_sessions"]:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, 'django', false)", [ORIGIN_SETTING])
