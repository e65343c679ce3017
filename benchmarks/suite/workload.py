"""The workload of issue 7: the data, the reads, the writes and the mixed traffic.

Everything here is plain Django ORM code that runs unchanged under every library,
with one documented exception: cacheops does not invalidate on ``QuerySet.update()``,
so under cacheops the update write uses its ``invalidated_update()``, the call its
documentation prescribes to keep the cache correct.

Data (fixed seed, same rows in every run): 100 authors, 50 tags, 5,000 posts with
bodies of about 1 KB and 2 to 4 tags each (3 on average), 50,000 comments.

A *read* is measured three ways by ``bench_orm.py``:
  hit   the read repeated with nothing written in between;
  miss  the first read after a write that invalidates everything the read depends on
        (``INVALIDATE`` below; the write is not timed);
A *write* is timed alone, right after a read that cached what it will invalidate.
The *mixed* workload is a fixed sequence of 95% reads and 5% writes whose targets
follow a Zipf distribution (a few hot posts, authors, pages and words get most of
the traffic), timed as a whole and reported as operations per second.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

SEED = 20251126
AUTHORS = 100
TAGS = 50
POSTS = 5_000
COMMENTS = 50_000
BODY_BYTES = 1_000
MARKER_WORDS = [f"zmark{i:02d}" for i in range(20)]  # each in about 1% of the bodies
PAGE_SIZE = 20
PAGES = 50  # list pages the mixed workload visits (the first 1,000 published posts)
ZIPF_S = 1.1
EPOCH = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)

# fmt: off
WORDS = [
    "cache", "version", "table", "query", "row", "index", "commit", "rollback", "read",
    "write", "page", "request", "response", "server", "client", "key", "value", "token",
    "epoch", "snapshot", "dependency", "join", "filter", "model", "field", "manager",
    "signal", "middleware", "template", "view", "url", "session", "user", "admin", "fast",
    "slow", "stale", "fresh", "quiet", "bright", "careful", "simple", "small", "large",
    "early", "late", "always", "never", "often", "rarely", "today", "tomorrow", "again",
]
# fmt: on

READS = ("get", "list", "count", "aggregate", "prefetch", "exists")
WRITES = ("save", "update", "create", "m2m_add")

#: What each figure measures, for the printed table, the README and the chart.
LABELS = {
    "get": "get by pk",
    "list": "20 published posts, select_related(author), by date",
    "count": "comment count of a post",
    "aggregate": "aggregate(Avg, Count) over published posts",
    "prefetch": "20 posts of an author, prefetch_related(tags)",
    "exists": "exists(), body__contains",
    "save": "save()",
    "update": "QuerySet.update(F() + 1)",
    "create": "create()",
    "m2m_add": "m2m add()",
    "mixed": "mixed 95% reads / 5% writes, Zipf",
}


# --- data -----------------------------------------------------------------------------


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high))).capitalize() + "."


def _body(rng: random.Random) -> str:
    sentences: list[str] = []
    size = 0
    while size < BODY_BYTES:
        sentence = _sentence(rng, 6, 16)
        sentences.append(sentence)
        size += len(sentence) + 1
    if rng.random() < 0.2:  # one marker word in 20% of the posts: each word in ~1%
        sentences.insert(rng.randrange(len(sentences)), rng.choice(MARKER_WORDS))
    return " ".join(sentences)


def seed() -> dict[str, int]:
    """Fill the empty blog tables with the fixed data set; return the row counts."""
    from django.db import transaction

    from .blog.models import Author, Comment, Post, Tag

    rng = random.Random(SEED)
    with transaction.atomic():
        authors = Author.objects.bulk_create(
            Author(
                name=f"Author {i:03d}",
                email=f"author{i}@example.com",
                bio=_sentence(rng, 10, 30),
            )
            for i in range(AUTHORS)
        )
        tags = Tag.objects.bulk_create(Tag(name=f"tag-{i:02d}") for i in range(TAGS))
        Post.objects.bulk_create(
            (
                Post(
                    author=rng.choice(authors),
                    title=_sentence(rng, 3, 8)[:200],
                    slug=f"post-{i}",
                    body=_body(rng),
                    published=rng.random() < 0.9,
                    pub_date=EPOCH - timedelta(minutes=rng.randint(0, 365 * 24 * 60)),
                    rating=rng.randint(0, 5),
                    views=rng.randint(0, 5000),
                )
                for i in range(POSTS)
            ),
            batch_size=500,
        )
        post_ids = list(Post.objects.order_by("id").values_list("id", flat=True))
        tag_ids = [tag.pk for tag in tags]
        Through = Post.tags.through
        Through.objects.bulk_create(
            (
                Through(post_id=post_id, tag_id=tag_id)
                for post_id in post_ids
                for tag_id in rng.sample(tag_ids, k=rng.randint(2, 4))
            ),
            batch_size=2000,
        )
        Comment.objects.bulk_create(
            (
                Comment(
                    post_id=rng.choice(post_ids),
                    author_name=f"reader{rng.randrange(1000)}",
                    body=_sentence(rng, 5, 25),
                    created=EPOCH + timedelta(minutes=rng.randint(0, 60 * 24 * 30)),
                    approved=rng.random() < 0.95,
                )
                for _ in range(COMMENTS)
            ),
            batch_size=2000,
        )
    return {
        "authors": Author.objects.count(),
        "tags": Tag.objects.count(),
        "posts": Post.objects.count(),
        "post tags": Through.objects.count(),
        "comments": Comment.objects.count(),
    }


# --- targets --------------------------------------------------------------------------


@dataclass
class Targets:
    """The rows the per-operation benchmarks read and write (fixed by the data set)."""

    post_pk: int  # a published post with comments and tags
    author_pk: int  # an author with at least 20 posts
    word: str  # a marker word: exists() scans until its first match
    comment_pk: int  # a comment of post_pk
    tag_pk: int  # a tag post_pk does not have (for m2m add)
    author_post_pk: int  # the first of the author's 20 posts
    author_post_tag_pk: int  # one of that post's tags
    list_post_pk: int  # the first post of the published list


def find_targets() -> Targets:
    from django.db.models import Count

    from .blog.models import Author, Comment, Post, Tag

    posts = Post.objects.filter(published=True).order_by("id")
    post = posts[len(posts) // 2]
    author = (
        Author.objects.annotate(n=Count("posts")).filter(n__gte=PAGE_SIZE).order_by("id").first()
    )
    author_post = Post.objects.filter(author_id=author.pk)[0]
    return Targets(
        post_pk=post.pk,
        author_pk=author.pk,
        word=MARKER_WORDS[0],
        comment_pk=Comment.objects.filter(post_id=post.pk).order_by("id")[0].pk,
        tag_pk=Tag.objects.exclude(posts=post).order_by("id")[0].pk,
        author_post_pk=author_post.pk,
        author_post_tag_pk=author_post.tags.order_by("id")[0].pk,
        list_post_pk=Post.objects.filter(published=True).order_by("-pub_date")[0].pk,
    )


# --- reads ----------------------------------------------------------------------------


def read_get(pk: int) -> Any:
    from .blog.models import Post

    return Post.objects.get(pk=pk)


def read_list(page: int = 0) -> Any:
    from .blog.models import Post

    start = page * PAGE_SIZE
    return list(
        Post.objects.filter(published=True)
        .select_related("author")
        .order_by("-pub_date")[start : start + PAGE_SIZE]
    )


def read_count(post: Any) -> int:
    return post.comments.count()


def read_aggregate() -> dict[str, Any]:
    from django.db.models import Avg, Count

    from .blog.models import Post

    return Post.objects.filter(published=True).aggregate(Avg("rating"), Count("id"))


def read_prefetch(author_pk: int) -> Any:
    from .blog.models import Post

    posts = Post.objects.filter(author_id=author_pk).prefetch_related("tags")[:PAGE_SIZE]
    return [[tag.name for tag in post.tags.all()] for post in posts]


def read_exists(word: str) -> bool:
    from .blog.models import Post

    return Post.objects.filter(body__contains=word).exists()


def reads(targets: Targets) -> dict[str, Callable[[], Any]]:
    """Each read kind as a call without arguments, on the fixed targets."""
    from .blog.models import Post

    post = Post.objects.get(pk=targets.post_pk)  # read_count's related manager hangs off it
    return {
        "get": lambda: read_get(targets.post_pk),
        "list": lambda: read_list(0),
        "count": lambda: read_count(post),
        "aggregate": read_aggregate,
        "prefetch": lambda: read_prefetch(targets.author_pk),
        "exists": lambda: read_exists(targets.word),
    }


# --- writes ---------------------------------------------------------------------------


def touch_post(pk: int) -> None:
    """save() a post without changing what any read returns but its view count."""
    from .blog.models import Post

    post = Post.objects.get(pk=pk)
    post.views += 1
    post.save()


def invalidations(targets: Targets) -> dict[str, Callable[[], None]]:
    """Per read kind, writes that invalidate every query of the read, in every library.

    They go through save() of a row the read returns (and, for the prefetch, an m2m
    remove + add of one of its tags), so even cacheops's per-condition invalidation
    drops the entries; none changes what the read returns beyond a view count.
    """
    from .blog.models import Comment, Post

    def prefetch() -> None:
        touch_post(targets.author_post_pk)
        post = Post.objects.get(pk=targets.author_post_pk)
        post.tags.remove(targets.author_post_tag_pk)
        post.tags.add(targets.author_post_tag_pk)

    def comment() -> None:
        Comment.objects.get(pk=targets.comment_pk).save()

    return {
        "get": lambda: touch_post(targets.post_pk),
        "list": lambda: touch_post(targets.list_post_pk),
        "count": comment,
        "aggregate": lambda: touch_post(targets.post_pk),
        "prefetch": prefetch,
        "exists": lambda: touch_post(targets.post_pk),
    }


def increment_views(pk: int) -> int:
    """``QuerySet.update(views=F("views") + 1)``; under cacheops its invalidating form."""
    from django.conf import settings
    from django.db.models import F

    from .blog.models import Post

    queryset = Post.objects.filter(pk=pk)
    if settings.BENCH_LIBRARY == "cacheops":
        # Plain update() is never invalidated by cacheops (it would serve stale rows).
        return queryset.invalidated_update(views=F("views") + 1)
    return queryset.update(views=F("views") + 1)


def create_comment(post_pk: int, n: int) -> Any:
    from .blog.models import Comment

    return Comment.objects.create(
        post_id=post_pk, author_name=f"bench{n}", body="A comment made by the benchmark."
    )


# --- mixed ----------------------------------------------------------------------------


class Zipf:
    """Ranks 0..n-1 drawn with probability proportional to 1 / (rank + 1) ** s."""

    def __init__(self, n: int, s: float = ZIPF_S) -> None:
        weights = [1 / (rank + 1) ** s for rank in range(n)]
        self.cumulative = list(itertools.accumulate(weights))

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_left(self.cumulative, rng.random() * self.cumulative[-1])


@dataclass
class MixedWorkload:
    """A fixed sequence of operations; ``run()`` performs all of it once."""

    operations: list[tuple[str, Any]]
    m2m_state: set[tuple[int, int]] = field(default_factory=set)
    created: list[int] = field(default_factory=list)
    #: Per call of run(), per read kind: [reads, reads that sent no SQL].
    served: list[dict[str, list[int]]] = field(default_factory=list)

    @classmethod
    def build(cls, size: int, write_share: float = 0.05) -> MixedWorkload:
        """Draw ``size`` operations; each kind's target (post, author, page, word, tag)
        is a Zipf draw over a fixed random ranking of the candidates."""
        from .blog.models import Author, Post, Tag

        rng = random.Random(SEED + 1)
        post_pks = list(Post.objects.order_by("id").values_list("pk", flat=True))
        author_pks = list(Author.objects.order_by("id").values_list("pk", flat=True))
        tag_pks = list(Tag.objects.order_by("id").values_list("pk", flat=True))
        for ranking in (post_pks, author_pks, tag_pks):
            rng.shuffle(ranking)
        words = list(MARKER_WORDS)
        zipf = {
            "post": Zipf(len(post_pks)),
            "author": Zipf(len(author_pks)),
            "tag": Zipf(len(tag_pks)),
            "page": Zipf(PAGES),
            "word": Zipf(len(words)),
        }
        operations: list[tuple[str, Any]] = []
        for _ in range(size):
            post_pk = post_pks[zipf["post"].draw(rng)]
            if rng.random() < write_share:
                kind = rng.choice(WRITES)
                argument: Any = post_pk
                if kind == "m2m_add":
                    argument = (post_pk, tag_pks[zipf["tag"].draw(rng)])
            else:
                kind = rng.choice(READS)
                argument = {
                    "get": post_pk,
                    "list": zipf["page"].draw(rng),
                    "count": post_pk,
                    "aggregate": None,
                    "prefetch": author_pks[zipf["author"].draw(rng)],
                    "exists": words[zipf["word"].draw(rng)],
                }[kind]
            operations.append((kind, argument))
        return cls(operations)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for kind, _ in self.operations:
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def run(self) -> None:
        """Perform the sequence once; ``served`` records, for this call and per read
        kind, how many reads ran and how many sent no SQL (served by the cache alone)."""
        from django.db import connection

        counter = _StatementCounter()
        with connection.execute_wrapper(counter):
            self._run(counter)
        self.served.append(counter.by_kind)

    def _run(self, counter: _StatementCounter) -> None:
        from .blog.models import Comment, Post

        for n, (kind, argument) in enumerate(self.operations):
            before = counter.statements
            if kind == "get":
                read_get(argument)
            elif kind == "list":
                read_list(argument)
            elif kind == "count":
                Comment.objects.filter(post_id=argument).count()
            elif kind == "aggregate":
                read_aggregate()
            elif kind == "prefetch":
                read_prefetch(argument)
            elif kind == "exists":
                read_exists(argument)
            elif kind == "save":
                touch_post(argument)
            elif kind == "update":
                increment_views(argument)
            elif kind == "create":
                self.created.append(create_comment(argument, n).pk)
            elif kind == "m2m_add":
                # Alternate add and remove per (post, tag) pair, so that an add always
                # inserts a row instead of finding it there from an earlier round.
                post = Post(pk=argument[0])
                if argument in self.m2m_state:
                    post.tags.remove(argument[1])
                    self.m2m_state.discard(argument)
                else:
                    post.tags.add(argument[1])
                    self.m2m_state.add(argument)
            else:  # pragma: no cover
                raise ValueError(kind)
            if kind in READS:
                tally = counter.by_kind.setdefault(kind, [0, 0])
                tally[0] += 1
                if counter.statements == before:
                    tally[1] += 1

    def rechecks(self, limit: int = 300) -> list[tuple[str, Any]]:
        """The first ``limit`` distinct reads of the sequence, to compare with the database."""
        seen: list[tuple[str, Any]] = []
        for kind, argument in self.operations:
            if kind in READS and (kind, argument) not in seen:
                seen.append((kind, argument))
        return seen[:limit]


class _StatementCounter:
    """An execute wrapper counting the SQL statements that reach the database."""

    def __init__(self) -> None:
        self.statements = 0
        #: Per read kind: [reads, reads that sent no SQL].
        self.by_kind: dict[str, list[int]] = {}

    def __call__(self, execute: Any, sql: Any, params: Any, many: Any, context: Any) -> Any:
        self.statements += 1
        return execute(sql, params, many, context)


def answer(kind: str, argument: Any) -> Any:
    """What a read of the mixed workload returns, as plain JSON-able data: the same
    read through a cache and through plain Django must give the same answer."""
    from .blog.models import Comment

    if kind == "get":
        post = read_get(argument)
        return [post.pk, post.title, post.views, post.rating, post.published]
    if kind == "list":
        return [[p.pk, p.views, p.author.name] for p in read_list(argument)]
    if kind == "count":
        return Comment.objects.filter(post_id=argument).count()
    if kind == "aggregate":
        found = read_aggregate()
        return {k: None if v is None else round(float(v), 6) for k, v in sorted(found.items())}
    if kind == "prefetch":
        return [sorted(names) for names in read_prefetch(argument)]
    return read_exists(argument)
