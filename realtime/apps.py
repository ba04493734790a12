from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Live updates"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_delete, post_save
        from rest_framework.authtoken.models import Token

        from realtime import signals

        user_model = get_user_model()
        user_logged_out.connect(signals.on_logout, dispatch_uid="realtime.logout")
        post_save.connect(signals.on_user_saved, sender=user_model, dispatch_uid="realtime.user")
        post_delete.connect(
            signals.on_user_deleted, sender=user_model, dispatch_uid="realtime.user_deleted"
        )
        post_delete.connect(signals.on_token_deleted, sender=Token, dispatch_uid="realtime.token")
