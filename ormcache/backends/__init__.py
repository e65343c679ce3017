"""Django cache backends and django-redis clients for scaled-out Redis (Cluster, Sentinel)."""
