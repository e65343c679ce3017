"""Views of the demo blog.

Each page reads the schema in a different way, so that browsing the site walks
the query shapes ormcache must get right: select_related and prefetches
(list), an annotation over a reverse foreign key (detail), multi-table
inheritance (featured posts), m2m through an auto and an explicit through
table (tags, categories), aggregates (stats), per-user rows (bookmarks), and a
write followed by a read of the same rows (comment form).

The page cache (ormcache.middleware.CacheMiddleware) serves the public pages
to anonymous visitors. The comment form has a page of its own: a form carries
the visitor's CSRF token, so a page with one is never cached, and the post page
(with its comment count) stays cacheable. Logged-in visitors (login, dashboard)
and the admin are never served from the page cache.
"""

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Avg, Count, Max, Q, Sum
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from .forms import CommentForm
from .models import AuditEntry, Author, Bookmark, Category, Comment, FeaturedPost, Post, Tag
from .summaries import reading_stats

PAGE_SIZE = 10


def _published_posts():
    return Post.objects.filter(published=True).select_related("author").prefetch_related("tags")


def _paginate(request, queryset):
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def post_list(request):
    page = _paginate(request, _published_posts())
    featured = []
    if page.number == 1:
        featured = FeaturedPost.objects.filter(published=True).select_related("author")[:3]
    return render(request, "blog/post_list.html", {"page": page, "featured": featured})


def post_detail(request, pk):
    post = get_object_or_404(
        _published_posts()
        .prefetch_related("categories")
        .annotate(comment_count=Count("comments", filter=Q(comments__approved=True))),
        pk=pk,
    )
    comments = post.comments.filter(approved=True)
    return render(request, "blog/post_detail.html", {"post": post, "comments": comments})


@require_http_methods(["GET", "HEAD", "POST"])
def comment_create(request, pk):
    post = get_object_or_404(Post, pk=pk, published=True)
    if request.method != "POST":
        return _render_comment_form(request, post, CommentForm())
    form = CommentForm(request.POST)
    if not form.is_valid():
        return _render_comment_form(request, post, form, status=400)
    comment: Comment = form.save(commit=False)
    comment.post = post
    comment.save()
    AuditEntry.objects.create(message=f"comment {comment.pk} on post {post.pk}")
    messages.success(request, "Thanks, your comment is published.")
    return redirect(f"{post.get_absolute_url()}#comment-{comment.pk}")


def _render_comment_form(request, post, form, status=200):
    context = {"post": post, "form": form}
    return render(request, "blog/comment_form.html", context, status=status)


def author_detail(request, pk):
    author = get_object_or_404(Author, pk=pk)
    page = _paginate(request, _published_posts().filter(author=author))
    return render(request, "blog/author_detail.html", {"author": author, "page": page})


def tag_detail(request, pk):
    tag = get_object_or_404(Tag, pk=pk)
    page = _paginate(request, _published_posts().filter(tags=tag))
    return render(request, "blog/tag_detail.html", {"tag": tag, "page": page})


def stats(request):
    published = Q(posts__published=True)
    context = {
        "totals": Post.objects.filter(published=True).aggregate(
            posts=Count("id"),
            avg_rating=Avg("rating"),
            max_rating=Max("rating"),
            views=Sum("views"),
        ),
        "drafts": Post.objects.filter(published=False).count(),
        "comments": Comment.objects.filter(approved=True).count(),
        "authors": Author.objects.count(),
        "top_authors": Author.objects.annotate(
            post_count=Count("posts", filter=published),
            avg_rating=Avg("posts__rating", filter=published),
        ).order_by("-post_count", "name")[:5],
        "top_tags": Tag.objects.annotate(post_count=Count("posts", filter=published)).order_by(
            "-post_count", "name"
        )[:10],
        "categories": Category.objects.annotate(post_count=Count("posts")).order_by("name"),
        "most_commented": Post.objects.filter(published=True)
        .annotate(comment_count=Count("comments", filter=Q(comments__approved=True)))
        .order_by("-comment_count", "-pub_date", "id")[:5],
        "reading": reading_stats(),  # cached_as: see summaries.py
    }
    return render(request, "blog/stats.html", context)


@login_required
def bookmarks(request):
    items = (
        Bookmark.objects.filter(user=request.user)
        .select_related("post", "post__author")
        .order_by("-created", "id")
    )
    return render(request, "blog/bookmarks.html", {"bookmarks": items})


class LoginView(auth_views.LoginView):
    template_name = "blog/login.html"


class LogoutView(auth_views.LogoutView):
    pass


@login_required
def dashboard(request):
    """The logged-in visitor's own page: never cached, never served to anyone else."""
    context = {
        "bookmarks": Bookmark.objects.filter(user=request.user)
        .select_related("post")
        .order_by("-created", "id")[:5],
        "recent_comments": Comment.objects.filter(approved=True)
        .select_related("post")
        .order_by("-created", "-id")[:5],
        "drafts": Post.objects.filter(published=False).count(),
    }
    return render(request, "blog/dashboard.html", context)
