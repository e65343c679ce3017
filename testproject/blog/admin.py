from django.contrib import admin

from .models import (
    AuditEntry,
    Author,
    Bookmark,
    Categorisation,
    Category,
    Comment,
    FeaturedPost,
    Post,
    PublishedPost,
    Tag,
)


@admin.register(Author)
class AuthorAdmin(admin.ModelAdmin):
    list_display = ["name", "email"]
    search_fields = ["name", "email"]


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ["name"]


class CategorisationInline(admin.TabularInline):
    model = Categorisation
    extra = 0
    autocomplete_fields = ["category"]


class CommentInline(admin.TabularInline):
    model = Comment
    extra = 0
    fields = ["author_name", "body", "approved", "created"]


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ["title", "author", "published", "pub_date", "rating", "views"]
    list_filter = ["published", "tags"]
    list_select_related = ["author"]
    search_fields = ["title", "body"]
    prepopulated_fields = {"slug": ["title"]}
    autocomplete_fields = ["author"]
    filter_horizontal = ["tags"]
    date_hierarchy = "pub_date"
    inlines = [CategorisationInline, CommentInline]


@admin.register(FeaturedPost)
class FeaturedPostAdmin(PostAdmin):
    list_display = ["title", "headline", "author", "published", "pub_date"]
    inlines = [CategorisationInline]


@admin.register(PublishedPost)
class PublishedPostAdmin(PostAdmin):
    """The proxy model: the same table, only the published rows."""

    inlines = []

    def get_queryset(self, request):
        return super().get_queryset(request).filter(published=True)


@admin.register(Comment)
class CommentAdmin(admin.ModelAdmin):
    list_display = ["author_name", "post", "approved", "created"]
    list_filter = ["approved"]
    list_select_related = ["post"]
    search_fields = ["author_name", "body"]
    raw_id_fields = ["post"]
    actions = ["approve", "unapprove"]

    @admin.action(description="Approve selected comments")
    def approve(self, request, queryset):
        queryset.update(approved=True)

    @admin.action(description="Hide selected comments")
    def unapprove(self, request, queryset):
        queryset.update(approved=False)


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    search_fields = ["name"]


@admin.register(Bookmark)
class BookmarkAdmin(admin.ModelAdmin):
    list_display = ["user", "post", "created"]
    list_select_related = ["user", "post"]
    raw_id_fields = ["post"]


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["message", "created"]
    date_hierarchy = "created"
