"""Fill the blog with deterministic sample data.

The same options and seed always produce the same authors, posts, tags,
comments and categories, so benchmarks and demo runs compare like with like.
Rows go in with bulk_create, except the few featured posts: multi-table
inheritance cannot be bulk-created.
"""

import random
import time
from datetime import datetime, timedelta, timezone
from itertools import product

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.core.management.color import no_style
from django.db import connections, router, transaction
from django.utils.text import slugify

from testproject.blog.models import (
    AuditEntry,
    Author,
    Bookmark,
    Categorisation,
    Category,
    Comment,
    FeaturedPost,
    Post,
    Tag,
)

# Sample vocabulary; fmt: off keeps the word lists compact.
# fmt: off
FIRST_NAMES = [
    "Ada", "Alan", "Barbara", "Dennis", "Edsger", "Frances", "Grace", "Guido", "Jean",
    "John", "Ken", "Linus", "Margaret", "Niklaus", "Radia", "Sophie", "Tim", "Yukihiro",
]
LAST_NAMES = [
    "Allen", "Bartik", "Hamilton", "Hopper", "Kay", "Knuth", "Lamport", "Liskov",
    "Lovelace", "McCarthy", "Perlman", "Ritchie", "Thompson", "Torvalds", "Turing", "Wirth",
]
TAG_NAMES = [
    "python", "django", "caching", "databases", "sql", "postgres", "sqlite", "redis",
    "performance", "testing", "security", "deployment", "async", "orm", "templates",
    "admin", "migrations", "benchmarks", "concurrency", "transactions", "http", "css",
]
CATEGORY_NAMES = ["News", "Tutorials", "Opinion", "Releases", "Interviews"]
WORDS = [
    "cache", "version", "table", "query", "row", "index", "commit", "rollback", "read",
    "write", "page", "request", "response", "server", "client", "key", "value", "token",
    "epoch", "snapshot", "dependency", "join", "filter", "model", "field", "manager",
    "signal", "middleware", "template", "view", "url", "session", "user", "admin", "fast",
    "slow", "stale", "fresh", "quiet", "bright", "careful", "simple", "small", "large",
    "early", "late", "always", "never", "often", "rarely", "today", "tomorrow", "again",
    "together", "apart", "inside", "outside",
]
TITLE_OPENERS = [
    "Notes on", "Why", "How to", "A week of", "Rethinking", "Lessons from",
    "Ten facts about", "The trouble with", "In praise of", "Measuring",
]
# fmt: on

# Dates are laid out backwards from a fixed point, not from now, so that a seed
# gives the same rows whatever the day.
EPOCH = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)
FEATURED = 5
ADMIN_USERNAME = ADMIN_PASSWORD = "admin"


class Command(BaseCommand):
    help = "Fill the blog with deterministic sample data (does nothing if posts exist)."

    def add_arguments(self, parser):
        parser.add_argument("--authors", type=int, default=10)
        parser.add_argument("--posts", type=int, default=200)
        parser.add_argument("--comments", type=int, default=1000)
        parser.add_argument("--tags", type=int, default=20)
        parser.add_argument("--categories", type=int, default=len(CATEGORY_NAMES))
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument(
            "--clear", action="store_true", help="delete all blog data before seeding"
        )
        parser.add_argument(
            "--with-admin",
            action="store_true",
            help=f"also create the superuser {ADMIN_USERNAME}/{ADMIN_PASSWORD} if missing",
        )

    def handle(self, *args, **options):
        for name in ("authors", "posts", "comments", "tags", "categories"):
            if options[name] < 0:
                raise CommandError(f"--{name} must not be negative")
        if options["posts"] and not options["authors"]:
            raise CommandError("posts need at least one author")
        if options["comments"] and not options["posts"]:
            raise CommandError("comments need at least one post")

        started = time.perf_counter()
        with transaction.atomic():
            admin = self._ensure_admin() if options["with_admin"] else None
            if options["clear"]:
                self._clear()
            elif Post.objects.exists():
                self.stdout.write(
                    "The blog already has posts: nothing to do (use --clear to start over)."
                )
                return
            counts = self._seed(random.Random(options["seed"]), admin, options)

        elapsed = time.perf_counter() - started
        summary = ", ".join(f"{n} {label}" for label, n in counts.items())
        self.stdout.write(self.style.SUCCESS(f"Seeded {summary} in {elapsed:.2f}s."))

    def _ensure_admin(self):
        User = get_user_model()
        user = User.objects.filter(username=ADMIN_USERNAME).first()
        if user is None:
            user = User.objects.create_superuser(
                ADMIN_USERNAME, "admin@example.com", ADMIN_PASSWORD
            )
            self.stdout.write(
                f"Created superuser: username {ADMIN_USERNAME}, password {ADMIN_PASSWORD}"
            )
        else:
            self.stdout.write(f"Superuser {ADMIN_USERNAME!r} already exists.")
        return user

    def _clear(self):
        """Empty the blog's tables and restart their id sequences, as `flush` does.

        Restarting the sequences makes a seed give the same primary keys every
        time, not only on a fresh database. The statements are raw SQL through
        Django's connection, which ormcache's write watcher sees like any write.
        """
        models = [
            Author,
            Tag,
            Post,
            FeaturedPost,
            Comment,
            Category,
            Categorisation,
            Bookmark,
            AuditEntry,
            Post.tags.through,
        ]
        connection = connections[router.db_for_write(Post)]
        tables = [model._meta.db_table for model in models]
        connection.ops.execute_sql_flush(
            connection.ops.sql_flush(no_style(), tables, reset_sequences=True)
        )
        self.stdout.write("Cleared the blog.")

    def _seed(self, rng, admin, options):
        authors = Author.objects.bulk_create(
            Author(
                name=f"{first} {last}",
                email=f"{slugify(first)}.{slugify(last)}@example.com",
                bio=_sentence(rng, 12, 30),
            )
            for first, last in _names(rng, options["authors"])
        )

        tag_names = TAG_NAMES[: options["tags"]]
        tag_names += [f"topic-{i}" for i in range(len(tag_names), options["tags"])]
        tags = Tag.objects.bulk_create(Tag(name=name) for name in tag_names)

        posts = [_post(rng, authors, i) for i in range(options["posts"])]
        featured = posts[:FEATURED]
        for post in featured:
            FeaturedPost.objects.create(
                **{
                    f.attname: getattr(post, f.attname)
                    for f in Post._meta.concrete_fields
                    if not f.primary_key
                },
                headline=f"Featured: {post.title}",
            )
        Post.objects.bulk_create(posts[FEATURED:])
        # Re-read rather than trusting bulk_create to set primary keys on every backend.
        posts = list(Post.objects.order_by("id"))

        PostTag = Post.tags.through
        post_tags = [
            PostTag(post_id=post.pk, tag_id=tag.pk)
            for post in posts
            for tag in rng.sample(tags, k=min(len(tags), rng.randint(1, 5)))
        ]
        PostTag.objects.bulk_create(post_tags)

        categories = Category.objects.bulk_create(
            Category(name=name) for name in _category_names(options["categories"])
        )
        categorisations = [
            Categorisation(category=category, post=post, weight=rng.randint(0, 10))
            for post in posts
            for category in rng.sample(categories, k=min(len(categories), rng.randint(0, 2)))
        ]
        Categorisation.objects.bulk_create(categorisations)

        comments = []
        for _ in range(options["comments"]):
            post = rng.choice(posts)
            comments.append(
                Comment(
                    post=post,
                    author_name=rng.choice(FIRST_NAMES),
                    body=_sentence(rng, 5, 40),
                    created=post.pub_date + timedelta(minutes=rng.randint(1, 60 * 24 * 30)),
                    approved=rng.random() < 0.95,
                )
            )
        Comment.objects.bulk_create(comments)

        bookmarks = []
        if admin is not None and posts:
            bookmarks = Bookmark.objects.bulk_create(
                Bookmark(user=admin, post=post, created=post.pub_date + timedelta(days=1))
                for post in rng.sample(posts, k=min(len(posts), 5))
            )

        return {
            "authors": len(authors),
            "tags": len(tags),
            "posts": len(posts),
            "featured posts": len(featured),
            "post tags": len(post_tags),
            "categories": len(categories),
            "categorisations": len(categorisations),
            "comments": len(comments),
            "bookmarks": len(bookmarks),
        }


def _names(rng, count):
    pairs = list(product(FIRST_NAMES, LAST_NAMES))
    rng.shuffle(pairs)
    names = []
    for i in range(count):
        first, last = pairs[i % len(pairs)]
        round_ = i // len(pairs)
        # Past every distinct pair, number the repeats so names stay unique.
        names.append((first, f"{last} {round_ + 1}" if round_ else last))
    return names


def _category_names(count):
    names = CATEGORY_NAMES[:count]
    return names + [f"Category {i + 1}" for i in range(len(names), count)]


def _sentence(rng, low, high):
    words = rng.choices(WORDS, k=rng.randint(low, high))
    return " ".join(words).capitalize() + "."


def _post(rng, authors, index):
    subject = " ".join(rng.sample(WORDS, k=rng.randint(1, 3)))
    title = f"{rng.choice(TITLE_OPENERS)} {subject}"
    paragraphs = [
        " ".join(_sentence(rng, 6, 18) for _ in range(rng.randint(2, 5)))
        for _ in range(rng.randint(2, 4))
    ]
    return Post(
        author=rng.choice(authors),
        title=title,
        slug=slugify(f"{title}-{index + 1}")[:200],
        body="\n\n".join(paragraphs),
        published=rng.random() < 0.9,
        pub_date=EPOCH - timedelta(minutes=rng.randint(0, 365 * 24 * 60)),
        rating=rng.randint(0, 5),
        views=rng.randint(0, 5000),
    )
