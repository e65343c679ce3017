"""Views used by the transaction tests (ATOMIC_REQUESTS)."""

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from testproject.blog.models import Post


@csrf_exempt
def rename(request, pk):
    Post.objects.filter(pk=pk).update(title=request.POST["title"])
    return HttpResponse(Post.objects.get(pk=pk).title)


@csrf_exempt
def rename_and_fail(request, pk):
    Post.objects.filter(pk=pk).update(title=request.POST["title"])
    Post.objects.get(pk=pk).title  # noqa: B018  (read inside the request's transaction)
    raise RuntimeError("the request fails: its transaction rolls back")


urlpatterns = [
    path("rename/<int:pk>/", rename),
    path("rename-and-fail/<int:pk>/", rename_and_fail),
]
