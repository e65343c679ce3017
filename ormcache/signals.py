"""blinker signals for metrics, logging and debugging.

Each is sent only when it has receivers, so an unobserved hit pays nothing.
Keyword arguments (all signals): ``labels`` (tuple of model labels involved),
``db_alias``, ``key`` (the result key, or None for invalidations), ``elapsed``
(seconds spent). ``invalidated`` also gets ``tables`` and ``pending`` (True for
the provisional bump before a write commits; a normal bump follows it).
``cache_stored`` also gets ``size``: the bytes of the entry as stored. The
sender is the model class the query was made on (for invalidations: the first
model written, or None when the tables are not models).

``stale_detected`` (shadow-verify mode, ``ORMCACHE["VERIFY"]``) also gets
``kind`` (``"query"``, or the helper: ``"cached_as"``, ``"cached_property"``,
``"fragment"``), ``name`` (the helper's name, or None), ``sql`` and ``params``
(None for helpers), ``tables`` (the dependencies, as ``{db_alias: tables}``),
``cached`` and ``fresh`` (what the cache held and what the database says now).

Downstream purges (``ORMCACHE["DOWNSTREAM"]``, docs/downstream.md) are sent from the
purge thread: ``purge_requested`` gets ``keys`` (the surrogate keys to purge; connect a
receiver that calls your CDN's API), and ``purged`` (sender: the purger) gets ``keys``,
``ok``, ``error`` (the exception, or None) and ``elapsed``.
"""

from blinker import Namespace

_signals = Namespace()

cache_hit = _signals.signal("ormcache.cache-hit", doc="A read was served from the cache.")
cache_miss = _signals.signal("ormcache.cache-miss", doc="A cacheable read went to the database.")
cache_stored = _signals.signal("ormcache.cache-stored", doc="A read result was stored.")
invalidated = _signals.signal("ormcache.invalidated", doc="Table versions were bumped.")
not_stored = _signals.signal(
    "ormcache.not-stored",
    doc="A result was too large (MAX_ENTRY_BYTES/MAX_ENTRY_ROWS) or could not be encoded.",
)
stale_detected = _signals.signal(
    "ormcache.stale-detected",
    doc="Shadow-verify mode found a cache hit that differs from the database.",
)
purge_requested = _signals.signal(
    "ormcache.purge-requested",
    doc="Surrogate keys to purge from downstream caches (sent from the purge thread).",
)
purged = _signals.signal(
    "ormcache.purged", doc="A purger delivered (or failed to deliver) a batch of purges."
)

__all__ = [
    "cache_hit",
    "cache_miss",
    "cache_stored",
    "invalidated",
    "not_stored",
    "purge_requested",
    "purged",
    "stale_detected",
]
