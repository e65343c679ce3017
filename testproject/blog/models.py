"""A small blog: the schema used by the demo, the tests and the benchmarks.

It covers the relation kinds a cache has to get right: foreign keys with
cascades, many-to-many (auto and explicit through tables), multi-table
inheritance, a proxy model, and a model that is deliberately not cached.
"""

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.urls import reverse
from django.utils import timezone

from ormcache import CachedManager, cached_property


class Author(models.Model):
    name = models.CharField(max_length=100)
    email = models.EmailField(blank=True)
    bio = models.TextField(blank=True)

    objects = CachedManager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TagQuerySet(models.QuerySet):
    """A plain QuerySet with a custom method: CachedManager.from_queryset caches it."""

    def popular(self, minimum: int = 1) -> models.QuerySet:
        return self.annotate(post_count=models.Count("posts")).filter(post_count__gte=minimum)


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)

    objects = CachedManager.from_queryset(TagQuerySet)()

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
    reactions = GenericRelation("Reaction")

    objects = CachedManager()

    class Meta:
        ordering = ["-pub_date", "id"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("blog:post-detail", args=[self.pk])

    @cached_property(depends_on=["blog.comment"])
    def comment_count(self) -> int:
        """Approved comments: one query per post and process-wide, never stale.

        Shared through the cache by every request and process, and recomputed
        after any write to a comment (or to this post). A queryset annotated with
        ``comment_count`` (the post detail view) sets the value on its instances.
        """
        return self.comments.filter(approved=True).count()


class FeaturedPost(Post):
    """Multi-table inheritance: reads join the parent table."""

    headline = models.CharField(max_length=200, blank=True)

    objects = CachedManager()


class PublishedPost(Post):
    """Proxy model: shares the post table."""

    class Meta:
        proxy = True

    objects = CachedManager()


class Comment(models.Model):
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="comments")
    author_name = models.CharField(max_length=100)
    body = models.TextField()
    created = models.DateTimeField(default=timezone.now)
    approved = models.BooleanField(default=True)

    objects = CachedManager()

    class Meta:
        ordering = ["created", "id"]

    def __str__(self) -> str:
        return f"{self.author_name} on {self.post_id}"


class Category(models.Model):
    """An explicit through model for many-to-many."""

    name = models.CharField(max_length=50)
    posts = models.ManyToManyField(Post, through="Categorisation", related_name="categories")

    objects = CachedManager()

    def __str__(self) -> str:
        return self.name


class Categorisation(models.Model):
    category = models.ForeignKey(Category, on_delete=models.CASCADE)
    post = models.ForeignKey(Post, on_delete=models.CASCADE)
    weight = models.IntegerField(default=0)

    objects = CachedManager()


class Bookmark(models.Model):
    """Per-user data: the policy marks it user_scoped, so pages reading it are private."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="bookmarks")
    created = models.DateTimeField(default=timezone.now)

    objects = CachedManager()


class AuditEntry(models.Model):
    """Volatile and write-heavy: a plain manager, never cached."""

    message = models.CharField(max_length=200)
    created = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.message


class Reaction(models.Model):
    """A generic relation: reactions attach to posts or comments through content types."""

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.PositiveBigIntegerField()
    target = GenericForeignKey("content_type", "object_id")
    kind = models.CharField(max_length=20, default="like")

    objects = CachedManager()

    class Meta:
        indexes = [models.Index(fields=["content_type", "object_id"])]


if hasattr(models, "DB_CASCADE"):  # Django 6.1+: foreign keys the database enforces itself

    class Newsletter(models.Model):
        """Its issues and subscribers are written by the database when it is deleted."""

        name = models.CharField(max_length=100)

        objects = CachedManager()

    class NewsletterIssue(models.Model):
        """Deleted by the database (ON DELETE CASCADE) with its newsletter."""

        newsletter = models.ForeignKey(
            Newsletter, on_delete=models.DB_CASCADE, related_name="issues"
        )
        subject = models.CharField(max_length=100)

        objects = CachedManager()

    class Subscriber(models.Model):
        """Detached by the database (ON DELETE SET NULL) from its newsletter."""

        newsletter = models.ForeignKey(
            Newsletter, on_delete=models.DB_SET_NULL, null=True, related_name="subscribers"
        )
        email = models.EmailField()

        objects = CachedManager()
