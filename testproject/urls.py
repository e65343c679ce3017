from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    # ormcache's stats page (staff only): hit ratio over time and counts per model.
    path("admin/ormcache/", include("ormcache.contrib.admin")),
    path("admin/", admin.site.urls),
    path("", include("testproject.blog.urls")),
]

if "debug_toolbar" in settings.INSTALLED_APPS:  # see settings.py: DEBUG and installed
    urlpatterns.append(path("__debug__/", include("debug_toolbar.urls")))
