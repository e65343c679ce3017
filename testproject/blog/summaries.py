"""Values computed in Python from many rows, cached with ormcache's helpers.

``reading_stats`` loads the body of every published post and counts words:
worth caching, and it must never be stale. ``cached_as`` keys it by the
versions of the queryset it reads, so any write to a post (a new post, an
edited body, an unpublished draft) recomputes it on the next call.
"""

import math

from ormcache import cached_as

from .models import Post

WORDS_PER_MINUTE = 200


@cached_as(Post.objects.filter(published=True))
def reading_stats() -> dict[str, int]:
    """Words published, and the minutes it takes to read them all."""
    bodies = Post.objects.filter(published=True).values_list("body", flat=True)
    words = sum(len(body.split()) for body in bodies.iterator())
    return {"words": words, "minutes": math.ceil(words / WORDS_PER_MINUTE)}
