"""A scripted workload for the policy advisor (``manage.py advisor_workload``).

Three models, three behaviours, each clear enough for the advisor to recognise:

- **read-mostly** (``blog.tag``): the tag list, a count and single tags are read
  over and over; a tag is renamed twice in the whole run. Advice: keep.
- **volatile** (``blog.comment``): every read of a post's comment count follows a
  new comment, so each entry is invalidated before it is read again. Advice:
  disable (volatile).
- **rarely read** (``blog.author``): each author's profile is read once and never
  again, so every stored entry is wasted. Advice: disable (rarely read).

The workload makes its own rows (names starting with ``advisor-``), resets the stats
once they exist, so that only the workload is measured, asks the advisor, and
deletes the rows at the end unless asked to keep them (the deletes are writes the
stats count afterwards). tests/test_advisor.py runs it on every backend pair.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import router

from ormcache import advisor, stats
from testproject.blog.models import Author, Comment, Post, Tag

PREFIX = "advisor-"


@dataclass(frozen=True)
class Workload:
    """How much of each behaviour to run."""

    tags: int = 10
    tag_rounds: int = 60
    tag_renames: int = 2
    comment_rounds: int = 150
    authors: int = 200


def seed(workload: Workload, using: str) -> Post:
    """The workload's rows: tags, authors, and one post to comment on."""
    Tag.objects.using(using).bulk_create(
        [Tag(name=f"{PREFIX}tag-{n}") for n in range(workload.tags)]
    )
    Author.objects.using(using).bulk_create(
        [Author(name=f"{PREFIX}author-{n}") for n in range(workload.authors)]
    )
    author = Author.objects.using(using).create(name=f"{PREFIX}writer")
    return Post.objects.using(using).create(author=author, title=f"{PREFIX}post", slug="advisor")


def read_mostly(workload: Workload, using: str) -> None:
    """blog.tag: the same few reads again and again, almost never a write."""
    tags = Tag.objects.using(using).filter(name__startswith=PREFIX)
    rename_every = workload.tag_rounds // (workload.tag_renames + 1)
    for round_ in range(workload.tag_rounds):
        if round_ and round_ % rename_every == 0 and round_ // rename_every <= workload.tag_renames:
            first = tags.order_by("id").first()
            assert first is not None
            Tag.objects.using(using).filter(pk=first.pk).update(name=f"{first.name}-renamed")
        list(tags.order_by("name"))
        tags.count()
        for n in range(3):
            tags.filter(name__startswith=f"{PREFIX}tag-{n}").exists()


def volatile(workload: Workload, post: Post, using: str) -> None:
    """blog.comment: a write before every read, so no entry lives to be read again."""
    comments = Comment.objects.using(using).filter(post=post)
    for n in range(workload.comment_rounds):
        Comment.objects.using(using).create(post=post, author_name=f"{PREFIX}{n}", body="hi")
        comments.count()


def rarely_read(workload: Workload, using: str) -> None:
    """blog.author: every profile read once, none read again."""
    pks = Author.objects.using(using).filter(name__startswith=f"{PREFIX}author-")
    for pk in list(pks.nocache().values_list("pk", flat=True)):
        Author.objects.using(using).get(pk=pk)


def clean(using: str) -> None:
    """Delete the workload's rows (comments go with their post)."""
    Post.objects.using(using).filter(title__startswith=PREFIX).delete()
    Author.objects.using(using).filter(name__startswith=PREFIX).delete()
    Tag.objects.using(using).filter(name__startswith=PREFIX).delete()


def run(
    workload: Workload | None = None, *, using: str | None = None, keep: bool = False
) -> list[advisor.Advice]:
    """Seed, reset the stats, run the three behaviours, and return the advice for them.

    Stats must be on (``ORMCACHE["STATS"]``). The rows are deleted at the end
    unless ``keep``.
    """
    workload = workload or Workload()
    using = using or router.db_for_write(Tag)
    clean(using)
    post = seed(workload, using)
    stats.reset()  # measure the workload only, not the seeding
    try:
        read_mostly(workload, using)
        volatile(workload, post, using)
        rarely_read(workload, using)
        return advisor.advise()
    finally:
        if not keep:
            clean(using)
