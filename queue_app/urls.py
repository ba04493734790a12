from django.urls import path

from queue_app import share, views

urlpatterns = [
    path("", views.home, name="home"),
    path("share/<str:token>", share.share, name="share"),
]
