"""Optional integrations: the admin stats page and the django-debug-toolbar panel."""
