from django.urls import path

from queue_app import share, views, webhooks

urlpatterns = [
    path("", views.home, name="home"),
    path("webhooks/fathom", webhooks.fathom_webhook, name="fathom-webhook"),
    path("share/<str:token>", share.share, name="share"),
]
