"""Cache keys: one per (database alias, table) version, one per cached result.

Version keys are readable (``ormcache:v:default:blog_post``) so operators can
inspect them; result keys are a digest of everything that determines the rows:
the database alias, the SQL, its parameters and the result shape. Parameters
are frozen into a text that is unique per type and value; a parameter of a type
we cannot freeze faithfully makes the query uncacheable rather than risk two
different queries sharing a key.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import hashlib
import re
import uuid
from collections.abc import Iterable
from typing import Any

PREFIX = "ormcache"
#: The version every entry also depends on; ``invalidate_all()`` bumps it.
GLOBAL_VERSION_KEY = f"{PREFIX}:v:*"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.$-]{1,120}$")
_FROZEN_TYPES = (
    str,
    int,
    float,
    bool,
    type(None),
    bytes,
    decimal.Decimal,
    datetime.date,
    datetime.datetime,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
)


class Uncacheable(Exception):
    """Raised while planning a read that must go to the database."""


def _safe(name: str) -> str:
    if _SAFE_NAME.match(name):
        return name
    return "h" + hashlib.blake2b(name.encode(), digest_size=10).hexdigest()


@functools.lru_cache(maxsize=8192)  # on every read: a regex check per name otherwise
def version_key(db_alias: str, table: str) -> str:
    # Lower-cased: SQLite and unquoted PostgreSQL names ignore case, so a raw
    # ``UPDATE MyTable`` must bump the same version as the ORM's "MyTable".
    return f"{PREFIX}:v:{_safe(db_alias)}:{_safe(table.lower())}"


def version_keys(db_alias: str, tables: Iterable[str]) -> list[str]:
    return [version_key(db_alias, table) for table in sorted(tables)]


#: Suffixes of a table's row-level keys (rows.py); ``:`` never appears in a safe name,
#: so none of them names a table.
ROWS_SUFFIX = ":rw"
INSERTS_SUFFIX = ":i"
PARTITIONS_SUFFIX = ":pw"
#: Longest key memcached accepts.
MAX_KEY_LENGTH = 250


def catch_all_keys(db_alias: str, table: str) -> list[str]:
    """The table key and the keys of a write whose rows are unknown (rows.py): every
    read of the table depends on one of them."""
    table_key = version_key(db_alias, table)
    return [table_key, table_key + ROWS_SUFFIX, table_key + PARTITIONS_SUFFIX]


def row_key(db_alias: str, table: str, pk: str) -> str:
    """The version of one row, by its canonical primary key (rows.canonical)."""
    return _fine(version_key(db_alias, table), "r", _safe(pk))


def partition_key(db_alias: str, table: str, column: str, value: str) -> str:
    """The version of the rows of ``table`` whose ``column`` holds ``value`` (canonical)."""
    return _fine(version_key(db_alias, table), "p", f"{_safe(column.lower())}:{_safe(value)}")


_FINE_KINDS = frozenset({"r", "p", "rw", "pw", "i"})


def table_key_of(key: str) -> str | None:
    """The table key a row-level key belongs to (None for other keys). Every write that
    bumps a row-level key also bumps its table key, so a dependency on the table key
    implies one on the row-level key."""
    parts = key.split(":", 5)
    if len(parts) < 5 or parts[1] != "v" or parts[4] not in _FINE_KINDS:
        return None
    return ":".join(parts[:4])


def _fine(table_key: str, kind: str, rest: str) -> str:
    """A row-level key; its last part is digested when the key would be too long for
    memcached (the table part stays, so the key still names its table)."""
    key = f"{table_key}:{kind}:{rest}"
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return f"{table_key}:{kind}:h{hashlib.blake2b(rest.encode(), digest_size=10).hexdigest()}"


def fixed_key(db_alias: str, table: str) -> str:
    """The key reads of fixed-lifetime models depend on instead: only explicit
    invalidation bumps it (``:`` never appears in a safe name, so it names no table)."""
    return f"{version_key(db_alias, table)}:fixed"


def fixed_keys(db_alias: str, tables: Iterable[str]) -> list[str]:
    return [fixed_key(db_alias, table) for table in sorted(tables)]


def freeze_params(params: Any) -> str:
    """A text that differs whenever the parameters differ in type or value."""
    return repr(_freeze(params))


def _freeze(value: Any) -> Any:
    if isinstance(value, _FROZEN_TYPES):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item) for item in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    raise Uncacheable(f"parameter of type {type(value).__name__} has no faithful key")


def sql_digest(db_alias: str, sql: str) -> bytes:
    """The part of a result key that depends on the SQL text (computed once per text)."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(db_alias.encode())
    digest.update(b"\x00")
    digest.update(sql.encode("utf-8", "surrogatepass"))
    return digest.digest()


def result_key(sql_digest: bytes, frozen_params: str, shape: str) -> str:
    digest = hashlib.blake2b(sql_digest, digest_size=20)
    digest.update(shape.encode())
    digest.update(b"\x00")
    digest.update(frozen_params.encode("utf-8", "surrogatepass"))
    return f"{PREFIX}:r:{digest.hexdigest()}"
