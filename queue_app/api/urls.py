"""Routes of the HTTP API, mounted at /api/ (no trailing slashes, except schema and docs)."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from queue_app.api import accounts, docs, views

app_name = "api"

urlpatterns = [
    path("auth/token", views.TokenView.as_view(), name="token"),
    path("queue", views.QueueView.as_view(), name="queue"),
    # Before queue/<entry_id>, which would otherwise take "clear" for an id.
    path("queue/clear", views.QueueClearView.as_view(), name="queue-clear"),
    path("queue/pause", views.QueuePauseView.as_view(), name="queue-pause"),
    path("queue/resume", views.QueueResumeView.as_view(), name="queue-resume"),
    path("queue/cancel", views.QueueCancelView.as_view(), name="queue-cancel"),
    path("queue/retry", views.QueueRetryView.as_view(), name="queue-retry"),
    path("queue/line", views.QueueLineView.as_view(), name="queue-line"),
    # str, not uuid: a malformed id must reach the view and get the API's JSON 404.
    path("queue/<str:entry_id>", views.EntryView.as_view(), name="entry"),
    path("queue/<str:entry_id>/retry", views.EntryRetryView.as_view(), name="entry-retry"),
    path("queue/<str:entry_id>/move", views.EntryMoveView.as_view(), name="entry-move"),
    path("meetings", views.MeetingsView.as_view(), name="meetings"),
    path("meetings/sync", accounts.MeetingSyncView.as_view(), name="meetings-sync"),
    path(
        "meetings/<int:meeting_id>/share",
        views.MeetingShareView.as_view(),
        name="meeting-share",
    ),
    path("credentials/fathom", accounts.FathomCredentialView.as_view(), name="credentials-fathom"),
    path(
        "credentials/fathom/webhook",
        accounts.FathomWebhookSettingsView.as_view(),
        name="credentials-fathom-webhook",
    ),
    path("events", views.EventsView.as_view(), name="events"),
    path("activity", views.ActivityView.as_view(), name="activity"),
    path("estimates", views.EstimatesView.as_view(), name="estimates"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", docs.SwaggerDocsView.as_view(), name="docs"),
    path("docs/assets/<str:filename>", docs.swagger_ui_asset, name="docs-asset"),
]
