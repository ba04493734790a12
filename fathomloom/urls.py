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

# JSON (the API's one error shape) under /api/ and /webhooks/, Django's pages elsewhere.
handler400 = "queue_app.api.errors.bad_request"
handler403 = "queue_app.api.errors.permission_denied"
handler404 = "queue_app.api.errors.page_not_found"
handler500 = "queue_app.api.errors.server_error"
