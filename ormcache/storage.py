"""How a cached result is written to and read back from the cache.

An entry is bytes that ormcache encodes itself, so the cache backend only ever
stores and returns a bytes object::

    b"OC2" | schema fingerprint (8 bytes) | HMAC-SHA256 (32 bytes, when signing) | payload

The payload is a pickle of ``(version snapshot, rows)``. Reading back is where
a cache shared with other software can hurt, so every check happens before
unpickling, and any failure is a miss plus a warning, never an exception:

- the magic and the fingerprint: entries written by another ormcache version, or
  before a deploy that changed a model, are not this schema's rows;
- the signature, when ``ORMCACHE["SIGNING_KEY"]`` is set: whoever can write to
  the cache server cannot make the application unpickle their bytes;
- the size limits ``MAX_ENTRY_BYTES``/``MAX_ENTRY_ROWS`` keep one huge result from
  evicting everything else (such results are simply not stored).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
from functools import lru_cache
from typing import Any

from django.apps import apps
from django.core.signals import setting_changed

from . import conf

logger = logging.getLogger("ormcache")

MAGIC = b"OC2"
_FINGERPRINT_SIZE = 8
_SIGNATURE_SIZE = 32


class TooLarge(Exception):
    """The result exceeds MAX_ENTRY_BYTES or MAX_ENTRY_ROWS."""


@lru_cache(maxsize=1)
def schema_fingerprint() -> bytes:
    """A digest of every model's table and columns: it changes when a deploy changes a model."""
    digest = hashlib.blake2b(digest_size=_FINGERPRINT_SIZE)
    digest.update(MAGIC)
    for model in sorted(apps.get_models(include_auto_created=True), key=lambda m: m._meta.label):
        opts = model._meta
        columns = [
            f"{field.column}:{field.get_internal_type()}:{field.null}"
            for field in opts.concrete_fields
        ]
        digest.update(f"{opts.label}|{opts.db_table}|{','.join(columns)};".encode())
    return digest.digest()


def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "INSTALLED_APPS":
        schema_fingerprint.cache_clear()


setting_changed.connect(_forget)


def _signing_key() -> bytes | None:
    key = conf.get_settings().get("SIGNING_KEY")
    if not key:
        return None
    return key.encode() if isinstance(key, str) else bytes(key)


def _count_rows(result: Any) -> int:
    if isinstance(result, list):  # MULTI results: a list of chunks of rows
        return sum(len(chunk) if isinstance(chunk, list) else 1 for chunk in result)
    return 1


def dump(snapshot: tuple, result: Any) -> bytes:
    """Encode an entry; raises TooLarge, or pickling errors for unpicklable rows."""
    max_rows = conf.get_settings().get("MAX_ENTRY_ROWS", conf.DEFAULT_MAX_ENTRY_ROWS)
    if max_rows is not None and _count_rows(result) > max_rows:
        raise TooLarge(f"more than MAX_ENTRY_ROWS ({max_rows}) rows")
    payload = pickle.dumps((snapshot, result), protocol=pickle.HIGHEST_PROTOCOL)
    max_bytes = conf.get_settings().get("MAX_ENTRY_BYTES", conf.DEFAULT_MAX_ENTRY_BYTES)
    if max_bytes is not None and len(payload) > max_bytes:
        raise TooLarge(f"{len(payload)} bytes, more than MAX_ENTRY_BYTES ({max_bytes})")
    key = _signing_key()
    signature = hmac.new(key, payload, hashlib.sha256).digest() if key else b""
    return b"".join((MAGIC, schema_fingerprint(), signature, payload))


def load(raw: Any, cache_key: str) -> tuple[tuple, Any] | None:
    """Decode an entry: ``(snapshot, rows)``, or None (and a warning) if it is not ours."""
    if raw is None:
        return None
    key = _signing_key()
    problem = _check(raw, key)
    if problem is None:
        start = len(MAGIC) + _FINGERPRINT_SIZE + (_SIGNATURE_SIZE if key else 0)
        try:
            # A view, not a slice: the payload is not copied before unpickling.
            snapshot, result = pickle.loads(memoryview(raw)[start:])
            if isinstance(snapshot, tuple):
                return snapshot, result
            problem = "its snapshot is not a tuple"
        except Exception as exc:  # truncated or corrupted payload
            problem = f"it does not unpickle ({type(exc).__name__})"
    logger.warning("ormcache: ignoring the entry %s: %s", cache_key, problem)
    return None


def _check(raw: Any, key: bytes | None) -> str | None:
    if not isinstance(raw, (bytes, bytearray)):
        return f"it is a {type(raw).__name__}, not ormcache bytes"
    if not raw.startswith(MAGIC):
        return "it is not in ormcache's format (or from another ormcache version)"
    fingerprint = raw[len(MAGIC) : len(MAGIC) + _FINGERPRINT_SIZE]
    if fingerprint != schema_fingerprint():
        return "it was written for another schema (a model changed since)"
    if key:
        start = len(MAGIC) + _FINGERPRINT_SIZE
        signature = raw[start : start + _SIGNATURE_SIZE]
        payload = memoryview(raw)[start + _SIGNATURE_SIZE :]
        expected = hmac.new(key, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(signature, expected):
            return "its signature does not match SIGNING_KEY"
    return None
