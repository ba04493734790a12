from django.urls import path

from queue_app import share, views, webhooks

urlpatterns = [
    path("", views.home, name="home"),
    path("start", views.landing, name="landing"),
    path("queue", views.queue, name="queue"),
    path("monitor", views.monitor, name="monitor"),
    path("monitor/stats", views.monitor_stats, name="monitor-stats"),
    path("monitor/entries", views.monitor_entries, name="monitor-entries"),
    path("metrics", views.metrics, name="metrics"),
    path("share/<str:token>", share.share, name="share"),
    path("webhooks/fathom", webhooks.fathom_webhook, name="fathom-webhook"),
    path(
        "webhooks/fathom/download",
        webhooks.fathom_download_callback,
        name="fathom-download-callback",
    ),
]
