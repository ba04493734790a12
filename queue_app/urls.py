from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from queue_app import share_page, views, webhooks

urlpatterns = [
    path("", views.home, name="home"),
    path("start", views.landing, name="landing"),
    path("queue", views.queue, name="queue"),
    path("monitor", views.monitor, name="monitor"),
    path("monitor/stats", views.monitor_stats, name="monitor-stats"),
    path("monitor/entries", views.monitor_entries, name="monitor-entries"),
    path("metrics", views.metrics, name="metrics"),
    # The page for people, the file for players (share_page); the file itself, with
    # ranges, at /media (queue_app.share serves it).
    path("share/<str:token>", share_page.share_page, name="share"),
    path("share/<str:token>/media", share_page.share_media, name="share-media"),
    path("oembed", share_page.oembed, name="oembed"),
    path("webhooks/fathom", webhooks.fathom_webhook, name="fathom-webhook"),
    path(
        "webhooks/fathom/download",
        webhooks.fathom_download_callback,
        name="fathom-download-callback",
    ),
    # Browsers and crawlers ask for /favicon.ico whatever the page says.
    path(
        "favicon.ico",
        RedirectView.as_view(url=static("queue_app/favicon.svg"), permanent=True),
        name="favicon",
    ),
]
