"""Spotting a new Redis master, so that a bump lost in a failover is never trusted.

Redis replicates asynchronously: a bump the old master acknowledged may never reach
the replica that is promoted, which then holds the table's *old* version token again
(invariant 4: a token that was valid once must never be valid again). Redis gives a
master a fresh replication id when it is promoted, and when it starts empty. So each
new connection to the master that holds the version keys compares the server's
``master_replid`` with the one recorded next to the versions; when they differ it gives
the global version a new token (every entry made before is dead) and records the id.
The check runs before the connection serves anything, in every process. Used by
``redis_sentinel.SentinelClient`` and ``redis_cluster.RedisClusterCache``.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import keys

logger = logging.getLogger("ormcache")

#: Where the replication id of the master the versions were last checked on is kept.
REPLID_KEY = f"{keys.PREFIX}:replid"


def master_replid(info: Any) -> str | None:
    """The ``master_replid`` of an ``INFO replication`` reply, when the server is a master."""
    text = info.decode() if isinstance(info, (bytes, bytearray)) else str(info)
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    if fields.get("role", "").strip() != "master":
        return None
    replid = fields.get("master_replid")
    return replid.strip() if replid else None


def check_master(connection: Any, *, marker: str, global_key: str, token: Any) -> bool:
    """On a new connection: invalidate everything if the master changed; True if it did.

    ``marker`` and ``global_key`` are the stored key names (prefixed, and in the
    versions' hash slot on a Cluster); ``token`` is a new global token, encoded as the
    backend stores integers. A node that does not hold the versions answers the GET
    with MOVED: nothing to check there.
    """
    from redis.exceptions import ResponseError

    connection.send_command("INFO", "replication")
    replid = master_replid(connection.read_response())
    if replid is None:
        return False
    connection.send_command("GET", marker)
    try:
        seen = connection.read_response()
    except ResponseError:  # MOVED: the versions live on another master
        return False
    if isinstance(seen, bytes):
        seen = seen.decode()
    if seen == replid:
        return False
    # invariant 4: the new master may hold tokens older than bumps the old one
    # acknowledged; a new global token makes every entry made before it dead.
    connection.send_command("SET", global_key, token)
    connection.read_response()
    connection.send_command("SET", marker, replid)
    connection.read_response()
    if seen is not None:
        logger.warning(
            "ormcache: the Redis master of the versions changed (replication id %s, was %s): "
            "invalidated everything",
            replid,
            seen,
        )
    return True
