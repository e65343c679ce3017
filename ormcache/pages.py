"""The page cache: whole responses, served while every table they read is unchanged.

``CacheMiddleware`` and the ``cache_page`` view decorator take one ``Page`` per
request through four steps:

1. ``Page(request)``: the rules that need only the request line (method, paths).
2. ``Page.lookup(view)``, once the view is known: the view and privacy rules
   (``page_rules``), then the cache. A current entry is the response, or a
   ``304 Not Modified`` when the client already holds it.
3. ``Page.recording()``: while the view runs and its template renders, collect
   what it read (``page_reads``).
4. ``Page.finish(response)``: the rules about what the view did and returned,
   then store the response with the version snapshot of its reads.

Keys: ``ormcache:p:<key_prefix>:<digest>``, a digest of the method, the absolute
URI (scheme, host, path and query string), the active language and time zone
(as Django's own cache keys have), and the request's values of
``vary_on_headers``. When the view's response has ``Vary`` headers of its own,
the entry at that key is a pointer naming them, and the page lives under a
second key that adds their values (what ``learn_cache_key`` does with its
header key; as there, ``Accept-Language`` adds nothing when ``USE_I18N`` is on).

Storage: one entry per page, encoded by ``storage.dump`` (schema fingerprint,
signature when ``SIGNING_KEY`` is set, size limits): the snapshot
``((version_key, token), ...)`` and the response (status, headers, content).
It expires after the page timeout, or sooner when a model it read has a
shorter policy timeout; a page that read nothing lives exactly that long.

Round trips on a hit: every process remembers, per key, the version keys of the
page it last saw there, so a hit is one ``get_many`` of the entry and those
version keys. The entry is served iff its own snapshot equals the tokens just
read; a remembered list that is out of date costs one more ``get_many`` (of the
keys the entry names), never a wrong answer. A view with its own ``Vary`` adds
one round trip for the pointer.

ETag: a weak ETag derived from the key and the snapshot (plus the time of the
fill for a page that read nothing), unless the view set its own. A request whose
``If-None-Match`` names the ETag of a current entry gets ``304 Not Modified``
without running the view.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.http import HttpResponse
from django.utils.cache import get_conditional_response, patch_vary_headers
from django.utils.timezone import get_current_timezone_name
from django.utils.translation import get_language

from . import conf, downstream, keys, page_reads, page_rules, storage, versions

logger = logging.getLogger("ormcache")

#: Bumped when the layout of a page entry changes, so old entries are misses.
PAGE_FORMAT = 1
_VERSION_KEYS_MEMO_SIZE = 4096


@dataclass(frozen=True)
class PageOptions:
    """``ORMCACHE["PAGES"]``, validated for use (the checks report what was wrong)."""

    enabled: bool
    timeout: int | None
    exclude_paths: tuple[re.Pattern, ...]
    include_paths: tuple[re.Pattern, ...]
    vary_on_headers: tuple[str, ...]
    key_prefix: str
    header: str


_options_memo: list[Any] = [None, None]


def options() -> PageOptions:
    """The page cache options, memoised per ``ORMCACHE`` object."""
    source = conf.get_settings()
    if _options_memo[0] is not source:
        _options_memo[:] = [source, _build_options(conf.page_options())]
    return _options_memo[1]


def _build_options(raw: dict[str, Any]) -> PageOptions:
    timeout = raw["timeout"]
    if not (timeout is None or (isinstance(timeout, int) and timeout >= 0)):
        timeout = conf.DEFAULT_TIMEOUT
    return PageOptions(
        enabled=raw["enabled"] is True and conf.is_enabled(),
        timeout=timeout,
        # A bad pattern excludes every page (and the checks report it).
        exclude_paths=_patterns(raw["exclude_paths"], bad=re.compile("")),
        include_paths=_patterns(raw["include_paths"], bad=re.compile(r"(?!)")),
        vary_on_headers=tuple(
            header
            for header in (
                raw["vary_on_headers"] if isinstance(raw["vary_on_headers"], (list, tuple)) else ()
            )
            if isinstance(header, str)
        ),
        key_prefix=str(raw["key_prefix"] or ""),
        header=raw["header"] if isinstance(raw["header"], str) else "",
    )


def _patterns(values: Any, bad: re.Pattern) -> tuple[re.Pattern, ...]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        return (bad,)
    compiled = []
    for value in values:
        try:
            compiled.append(re.compile(value))
        except (re.error, TypeError):
            compiled.append(bad)
    return tuple(compiled)


def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "ORMCACHE":
        _options_memo[:] = [None, None]
        _version_keys_memo.clear()


setting_changed.connect(_forget, dispatch_uid="ormcache.pages")

# Per key: the version keys of the page last seen there (see "Round trips").
_version_keys_memo: OrderedDict[str, tuple[str, ...]] = OrderedDict()
_memo_lock = threading.Lock()


def _remember(key: str, version_keys: tuple[str, ...]) -> None:
    with _memo_lock:  # threaded servers share the memo
        _version_keys_memo[key] = version_keys
        _version_keys_memo.move_to_end(key)
        if len(_version_keys_memo) > _VERSION_KEYS_MEMO_SIZE:
            _version_keys_memo.popitem(last=False)


class Page:
    """One request's way through the page cache."""

    def __init__(self, request: Any, *, timeout: Any = None, key_prefix: str | None = None) -> None:
        self.request = request
        self.options = options()
        self.timeout = self.options.timeout if timeout is None else timeout
        self.key_prefix = self.options.key_prefix if key_prefix is None else key_prefix
        #: "" while the page may still be served or stored; else the reason it is not.
        self.bypass = ""
        #: The bypass is about one visitor (their credentials, session, cookies...):
        #: downstream caches are told so too (``downstream.mark_not_shared``).
        self.private = False
        self.outcome = ""  # "hit" once served from the cache
        self.looked_up = False
        self.deferred = False  # the view has its own cache_page decorator
        self.reads: page_reads.PageReads | None = None
        self._session: Any = None
        self._session_class: type | None = None
        self._session_accessed = False
        self._session_modified = False
        self._session_used = False
        if not self.options.enabled:
            self.bypass = "page cache disabled"
        else:
            self.bypass = page_rules.method_rule(request) or page_rules.path_rule(
                request, self.options.exclude_paths, self.options.include_paths
            )

    # --- 2. before the view -------------------------------------------------------

    def lookup(self, view_func: Any, *, deferring: bool = True) -> HttpResponse | None:
        """Apply the view and privacy rules, then answer from the cache if possible.

        Returns the response (a hit or a 304), or None: run the view. Runs where
        the view's database work runs (in the view's thread under ASGI).
        """
        page_reads.watch_connections()
        if self.bypass:
            return None
        if deferring and _has_own_decorator(view_func):
            self.deferred = True
            return None
        self.bypass = page_rules.view_rule(view_func, getattr(self.request, "resolver_match", None))
        if self.bypass:
            self.private = self.bypass == "admin"
            return None
        # invariant 7: a private request is decided before the cache is looked up.
        # The session and user lookups behind the rules are not the page's reads.
        with self.reads.paused_block() if self.reads else contextlib.nullcontext():
            self.bypass = page_rules.credentials_rule(self.request)
        if self.bypass:
            self.private = True
            return None
        try:
            response = self._cached_response()
        except versions.CacheUnavailable:
            # invariant 6: fail open, the view answers (and nothing is stored).
            self.bypass = "cache unavailable"
            return None
        self.looked_up = True
        if response is not None:
            return response
        self._watch_session()
        return None

    def _cached_response(self) -> HttpResponse | None:
        methods = ("GET", "HEAD") if self.request.method == "HEAD" else ("GET",)
        for method in methods:
            payload = self._find(method)
            if payload is not None:
                return self._serve(payload)
        return None

    def _find(self, method: str) -> tuple | None:
        """The payload of a current entry for this request, or None."""
        cache = versions.get_cache()
        key, vary = self.key(method), ()
        for _ in range(2):  # the entry at the base key may point to a variant
            remembered = _version_keys_memo.get(key, ())
            fetched = versions.read_many(cache, [key, *remembered])
            loaded = storage.load(fetched.get(key), key)
            if loaded is None:
                return None
            snapshot, payload = loaded
            if not (isinstance(payload, tuple) and payload and payload[0] == PAGE_FORMAT):
                return None
            if payload[1] == "vary" and not vary:
                vary = payload[2]
                key = self.key(method, vary)
                continue
            if payload[1] != "page" or payload[2] != vary:
                return None
            version_keys = tuple(version_key for version_key, _ in snapshot)
            if version_keys != remembered:
                _remember(key, version_keys)
                missing = [k for k in version_keys if k not in remembered]
                if missing:
                    fetched.update(versions.read_many(cache, missing))
            if all(fetched.get(version_key) == token for version_key, token in snapshot):
                return payload
            return None
        return None

    def _serve(self, payload: tuple) -> HttpResponse:
        _, _, _vary, etag, status, reason, headers, content = payload
        response = HttpResponse(content, status=status, reason=reason)
        for name, value in headers:
            response.headers[name] = value
        self.outcome = "hit"
        answer = get_conditional_response(self.request, etag=etag, response=response)
        assert answer is not None  # given a response, Django returns one
        if page_rules.gets_a_cookie_above(self.request):
            # The anonymous page is right for this visitor (it used no session or
            # token), but this copy of it leaves with their cookie.
            downstream.mark_not_shared(answer, private=True)
        self._mark(answer, "hit")
        return answer

    def _watch_session(self) -> None:
        """Start telling the view's use of the session apart from the privacy rules'.

        Until ``_restore_session``, the session is an instance of a subclass of its
        own class in which reading its key counts as using it (``_watched_class``).
        """
        session = getattr(self.request, "session", None)
        if session is None or not hasattr(session, "accessed"):
            return
        self._session = session
        self._session_accessed = session.accessed
        self._session_modified = session.modified
        original: type = session.__class__
        try:
            session.__class__ = _watched_class(original)
            self._session_class = original
        except TypeError:
            self._session_class = None  # cannot be watched: the view may have used it
        session.accessed = False

    # --- 3. while the view runs ------------------------------------------------------

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        try:
            if self.bypass:
                yield
                return
            with page_reads.recording() as found:
                self.reads = found
                yield
        finally:
            self._restore_session()  # also when the view raised

    # --- 4. after the view -----------------------------------------------------------

    @property
    def may_store(self) -> bool:
        """True when ``finish`` may store (and so does I/O)."""
        return self.looked_up and not self.bypass and not self.outcome and not self.deferred

    def finish(self, response: Any) -> Any:
        """Store the response if every rule allows it; say what happened in the header."""
        self._restore_session()
        if self.deferred or self.outcome == "hit":
            return response
        if not self.bypass and not self.looked_up:
            self.bypass = "the view was not reached"
        if self.bypass:
            self._mark_not_shared(response)
            return self._mark(response, f"bypass ({self.bypass})")
        if self.options.vary_on_headers:
            patch_vary_headers(response, self.options.vary_on_headers)
        reason = page_rules.after_view(self.request, self._session_used)
        self.private = bool(reason)
        if not reason:
            reason = page_rules.response_rule(response)
            self.private = reason == "Set-Cookie"
        if not reason:
            reason, response = self._store(response)
        if reason:
            self.bypass = reason
            self._mark_not_shared(response)
            return self._mark(response, f"bypass ({reason})")
        if page_rules.gets_a_cookie_above(self.request):
            # Stored shared; this copy leaves with the visitor's cookie.
            downstream.mark_not_shared(response, private=True)
        etag = response.headers.get("ETag")
        return self._mark(
            get_conditional_response(self.request, etag=etag, response=response), "miss"
        )

    def _store(self, response: Any) -> tuple[str, Any]:
        assert self.reads is not None
        snapshot, reason, policy_timeout, read_anything = self.reads.snapshot()
        if snapshot is None:
            self.private = self.reads.private
            return reason, response
        timeout = self.timeout
        if policy_timeout is not None and (timeout is None or policy_timeout < timeout):
            timeout = policy_timeout
        if timeout == 0:
            return "timeout 0", response
        vary = self._view_vary(response)
        key = self.key(self.request.method, vary)
        pairs = tuple(sorted(snapshot.items()))
        own_etag = not response.has_header("ETag")
        if own_etag:
            response.headers["ETag"] = _etag(key, pairs, read_anything)
        # The stored copy carries the shared marks; the response keeps them only if stored.
        unmark = downstream.mark_shared(response, snapshot, timeout)
        reason = self._put(key, vary, pairs, response, timeout)
        if reason:
            unmark()
            if own_etag:
                del response.headers["ETag"]
        return reason, response

    def _put(
        self, key: str, vary: tuple[str, ...], pairs: tuple, response: Any, timeout: int | None
    ) -> str:
        """Store the page (and the pointer to it); "" or why it could not be stored."""
        payload = (
            PAGE_FORMAT,
            "page",
            vary,
            response.headers["ETag"],
            response.status_code,
            response.reason_phrase,
            tuple(response.items()),
            response.content,
        )
        cache = versions.get_cache()
        try:
            entry = storage.dump(pairs, payload)
            if vary:
                pointer = storage.dump((), (PAGE_FORMAT, "vary", vary))
                versions.store(cache, self.key(self.request.method), pointer, timeout)
            versions.store(cache, key, entry, timeout)
        except storage.TooLarge as exc:
            return f"too large: {exc}"
        except versions.CacheUnavailable:
            return "cache unavailable"
        except Exception as exc:
            logger.warning("ormcache: could not store a page: %s", exc)
            return "could not store"
        _remember(key, tuple(version_key for version_key, _ in pairs))
        return ""

    def _view_vary(self, response: Any) -> tuple[str, ...]:
        """The headers the view's response varies on, besides ``vary_on_headers``.

        ``Accept-Language`` is left out when ``USE_I18N`` is on, as in Django's
        ``learn_cache_key``: the key has the active language already.
        """
        if not response.has_header("Vary"):
            return ()
        configured = {header.lower() for header in self.options.vary_on_headers}
        if settings.USE_I18N:
            configured.add("accept-language")
        found = {header.lower() for header in page_rules.split_header_value(response["Vary"])}
        return tuple(sorted(found - configured))

    def _restore_session(self) -> None:
        """Note whether the view used the session; leave it as Django expects it."""
        session = self._session
        if session is None:
            return
        self._session = None
        if self._session_class is None:
            self._session_used = True
        else:
            session.__class__ = self._session_class
            self._session_used = session.accessed or (
                session.modified and not self._session_modified
            )
        session.accessed = self._session_accessed or session.accessed

    def _mark_not_shared(self, response: Any) -> None:
        """Tell downstream caches not to keep a page ormcache did not store."""
        request = self.request
        private = self.private or bool(
            "HTTP_AUTHORIZATION" in request.META
            or settings.SESSION_COOKIE_NAME in request.COOKIES
            or getattr(response, "cookies", None)
            or response.has_header("Set-Cookie")
            or page_rules.gets_a_cookie_above(request)
        )
        downstream.mark_not_shared(response, private=private)

    def _mark(self, response: Any, text: str) -> Any:
        if self.options.header:
            response.headers[self.options.header] = text
        return response

    # --- keys ----------------------------------------------------------------------

    def key(self, method: str, vary: tuple[str, ...] = ()) -> str:
        """The cache key of this request's page; ``vary``: the view's own Vary headers."""
        request = self.request
        parts = [str(PAGE_FORMAT), method, request.build_absolute_uri()]
        if settings.USE_I18N:
            parts.append(getattr(request, "LANGUAGE_CODE", None) or get_language() or "")
        if settings.USE_TZ:
            parts.append(get_current_timezone_name())
        for header in (*self.options.vary_on_headers, *vary):
            value = request.META.get(_meta_name(header))
            parts.append(f"{header.lower()}:" + ("\x00" if value is None else f"={value}"))
        digest = hashlib.blake2b(digest_size=20)
        for part in parts:
            digest.update(part.encode("utf-8", "surrogateescape"))
            digest.update(b"\x1f")
        return f"{keys.PREFIX}:p:{self.key_prefix}:{digest.hexdigest()}"


def _meta_name(header: str) -> str:
    name = header.upper().replace("-", "_")
    if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return name
    return f"HTTP_{name}"


def _etag(key: str, pairs: tuple, read_anything: bool) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(key.encode())
    digest.update(repr(pairs).encode())
    if not read_anything:
        # Nothing versions this page: its fills differ only in time.
        digest.update(str(time.time_ns()).encode())
    return f'W/"{digest.hexdigest()}"'


@functools.cache
def _watched_class(cls: type) -> type:
    """``cls``, in which reading the session key or ``is_empty()`` marks the session accessed.

    Django sets ``accessed`` when the session's data is read, not its key; but a page
    built from the key (an anonymous cart keyed by it) is that visitor's as much as
    one built from the data. Only the session object of a page being built gets this
    class, and only while its view runs: no Django class is patched, and
    SessionMiddleware's own calls afterwards mark nothing.
    """

    def reading(getter: Any) -> Any:
        def get(session: Any) -> Any:
            session.accessed = True
            return getter(session)

        return get

    namespace: dict[str, Any] = {"__slots__": (), "__module__": __name__}
    for name in ("session_key", "_session_key"):
        found = inspect.getattr_static(cls, name, None)
        if isinstance(found, property) and found.fget is not None:
            namespace[name] = property(reading(found.fget), found.fset, found.fdel)
    is_empty = getattr(cls, "is_empty", None)
    if callable(is_empty):
        namespace["is_empty"] = reading(is_empty)
    return type(cls.__name__, (cls,), namespace)


def _has_own_decorator(view_func: Any) -> bool:
    return any(
        getattr(func, page_rules.CACHE_PAGE_ATTR, False)
        for func in page_rules._unwrapped(view_func)
    )


_REQUEST_ATTR = "_ormcache_page"


def attach(request: Any, page: Page) -> Page:
    setattr(request, _REQUEST_ATTR, page)
    return page


def attached(request: Any) -> Page | None:
    return getattr(request, _REQUEST_ATTR, None)
