from django.contrib import admin

from queue_app.models import Meeting

admin.site.register(Meeting)
