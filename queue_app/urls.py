from django.urls import path

from queue_app import views

urlpatterns = [
    path("", views.home, name="home"),
]
