"""The blog schema of ``testproject/blog/models.py``, reduced to the four models the
workload touches (same fields, tables, orderings and relations).

It is a copy rather than an import because the peers' environments must not import
ormcache at all: the testproject's models use ``ormcache.CachedManager``. Here the
manager depends on the library being measured: ormcache's ``CachedManager`` when
``BENCH_LIBRARY`` is ``"ormcache"``, Django's own ``Manager`` otherwise (cachalot and
cacheops hook into Django globally and need nothing on the models).
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


def _manager() -> models.Manager:
    if settings.BENCH_LIBRARY == "ormcache":
        from ormcache import CachedManager

        return CachedManager()
    return models.Manager()


class Author(models.Model):
    name = models.CharField(max_length=100)
    email = models.EmailField(blank=True)
    bio = models.TextField(blank=True)

    objects = _manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)

    objects = _manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Post(models.Model):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="posts")
    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200)
    body = models.TextField(blank=True)
    published = models.BooleanField(default=True)
    pub_date = models.DateTimeField(default=timezone.now)
    rating = models.IntegerField(default=0)
    views = models.IntegerField(default=0)
    tags = models.ManyToManyField(Tag, related_name="posts", blank=True)

    objects = _manager()

    class Meta:
        ordering = ["-pub_date", "id"]

    def __str__(self) -> str:
        return self.title


class Comment(models.Model):
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="comments")
    author_name = models.CharField(max_length=100)
    body = models.TextField()
    created = models.DateTimeField(default=timezone.now)
    approved = models.BooleanField(default=True)

    objects = _manager()

    class Meta:
        ordering = ["created", "id"]

    def __str__(self) -> str:
        return f"{self.author_name} on {self.post_id}"
