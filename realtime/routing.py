from django.urls import path

from realtime.consumers import QueueConsumer

websocket_urlpatterns = [
    path("queue_updates", QueueConsumer.as_asgi()),
]
