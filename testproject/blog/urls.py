from django.urls import path

from . import views

app_name = "blog"

urlpatterns = [
    path("", views.post_list, name="post-list"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("post/<int:pk>/", views.post_detail, name="post-detail"),
    path("post/<int:pk>/comment/", views.comment_create, name="comment-create"),
    path("author/<int:pk>/", views.author_detail, name="author-detail"),
    path("tag/<int:pk>/", views.tag_detail, name="tag-detail"),
    path("stats/", views.stats, name="stats"),
    path("bookmarks/", views.bookmarks, name="bookmarks"),
]
