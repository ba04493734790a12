from django.contrib import admin
from django.urls import include, path

from fathomloom import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("queue_app.api.urls")),
    path("", include("realtime.urls")),
    path("", include("queue_app.urls")),
]
