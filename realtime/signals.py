"""Access changes reach open sockets: logout, deactivation and token deletion close them."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from realtime.publisher import revoke_access
from realtime.tickets import fingerprint


def on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return
    key = getattr(getattr(request, "session", None), "session_key", None)
    # Only the sockets this session opened: the user may be signed in elsewhere too.
    revoke_access(user_id=user.pk, credential=fingerprint(key) if key else None)


def on_user_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    if not instance.is_active:
        transaction.on_commit(lambda: revoke_access(user_id=instance.pk))


def on_user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    transaction.on_commit(lambda: revoke_access(user_id=instance.pk))


def on_token_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    user_id, credential = instance.user_id, fingerprint(instance.key)
    transaction.on_commit(lambda: revoke_access(user_id=user_id, credential=credential))
