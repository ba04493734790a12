from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from queue_app import share, views, webhooks

urlpatterns = [
    path("", views.home, name="home"),
    path("start", views.landing, name="landing"),
    path("queue", views.queue, name="queue"),
    path("monitor", views.monitor, name="monitor"),
    path("monitor/stats", views.monitor_stats, name="monitor-stats"),
    path("metrics", views.metrics, name="metrics"),
    path("share/<str:token>", share.share, name="share"),
    path("webhooks/fathom", webhooks.fathom_webhook, name="fathom-webhook"),
    # Browsers and crawlers ask for /favicon.ico whatever the page says.
    path(
        "favicon.ico",
        RedirectView.as_view(url=static("queue_app/favicon.svg"), permanent=True),
        name="favicon",
    ),
]
