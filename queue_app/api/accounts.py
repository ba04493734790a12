"""The caller's Fathom connection over HTTP: the API key (write-only), auto-queue, the
webhook's URL and secret, and importing their meetings.
"""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from queue_app import accounts, importing
from queue_app.api.errors import hide_secrets_in_debug
from queue_app.api.serializers import ErrorSerializer
from queue_app.api.views import UNAVAILABLE, ApiView, errors

# The account errors' statuses and codes are theirs (queue_app/errors.py); these only
# describe them in the schema.
FATHOM_ERRORS = {
    502: OpenApiResponse(ErrorSerializer, description="`fathom_bad_response`."),
    503: OpenApiResponse(
        ErrorSerializer,
        description=(
            "`fathom_unavailable` (see `Retry-After`); at a sync also `credential_unreadable` "
            f"(connect again); or {UNAVAILABLE}"
        ),
    ),
}


# --- serializers ---------------------------------------------------------------------------


class StrictCharField(serializers.CharField):
    """Text only: DRF's CharField would take the number 12345678 as "12345678"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class FathomKeyInputSerializer(serializers.Serializer):
    # What Fathom issues (accounts.check_api_key_format, the same rule for other callers):
    # anything else would fail as an HTTP header, after a call to Fathom or in it.
    api_key = StrictCharField(
        min_length=accounts.API_KEY_MIN_LENGTH,
        max_length=accounts.API_KEY_MAX_LENGTH,
        validators=[RegexValidator(accounts.API_KEY_PATTERN, accounts.API_KEY_FORMAT)],
        write_only=True,
    )


class AutoQueueInputSerializer(serializers.Serializer):
    auto_queue = serializers.BooleanField()


class WebhookSecretInputSerializer(serializers.Serializer):
    secret = StrictCharField(max_length=512, write_only=True)


class FathomConnectionSerializer(serializers.Serializer):
    connected = serializers.BooleanField()
    last4 = serializers.CharField(
        allow_null=True, help_text="`…` and the key's last four characters; null if none."
    )
    auto_queue = serializers.BooleanField()
    webhook_registered = serializers.BooleanField(
        help_text="Fathom's webhook was registered for this account when it was connected."
    )
    webhook_error = serializers.CharField(
        allow_null=True, help_text="Why Fathom did not register it (then add it by hand)."
    )


class WebhookSettingsSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="Register this URL as the webhook's destination.")
    secret_set = serializers.BooleanField()
    registered = serializers.BooleanField(help_text="Registered in Fathom automatically.")
    error = serializers.CharField(allow_null=True, help_text="Why registration was refused.")


class SyncResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()


# --- base view, throttles ------------------------------------------------------------------


class AccountApiView(ApiView):
    # JSON only: the browsable API would render a form that could echo a submitted key.
    renderer_classes = [JSONRenderer]


class FathomCallThrottle(SimpleRateThrottle):
    """10 requests a minute per user on endpoints that call Fathom on their behalf."""

    scope = "fathom_call"
    rate = "10/min"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if request.method not in ("POST",):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class FathomSyncThrottle(FathomCallThrottle):
    scope = "fathom_sync"


# --- views ---------------------------------------------------------------------------------


# Error reports hide the key, the DEBUG page included: in request.POST (a form), in the locals
# of the views and services marked with sensitive_variables, and of what they call.
@method_decorator(hide_secrets_in_debug, name="dispatch")
@method_decorator(sensitive_post_parameters("api_key", "secret"), name="dispatch")
class FathomCredentialView(AccountApiView):
    """The caller's Fathom API key: set (checked with Fathom), shown as its last four only."""

    throttle_classes = [FathomCallThrottle]

    @extend_schema(
        operation_id="credentials_fathom_show",
        responses={200: FathomConnectionSerializer, **errors(401)},
        description="Whether a Fathom key is connected; only its last four characters.",
    )
    def get(self, request: Request) -> Response:
        return Response(accounts.fathom_account_status(request.user))

    @extend_schema(
        operation_id="credentials_fathom_set",
        request=FathomKeyInputSerializer,
        responses={
            200: FathomConnectionSerializer,
            **errors(400, 401, 413, 415, 429),
            **FATHOM_ERRORS,
        },
        description=(
            "Connect a Fathom API key, replacing any earlier one. Fathom is asked first: a key "
            "it refuses gets 400 `fathom_key_rejected` and nothing is stored. Then the webhook "
            "is registered in Fathom (`webhook_registered`); if Fathom refuses, the key stays "
            "connected and `webhook_error` says why."
        ),
    )
    @sensitive_variables()  # `data`: a serializer's repr shows its input
    def post(self, request: Request) -> Response:
        data = FathomKeyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        accounts.fathom_account_set_key(user=request.user, api_key=data.validated_data["api_key"])
        return Response(accounts.fathom_account_status(request.user))

    @extend_schema(
        operation_id="credentials_fathom_update",
        request=AutoQueueInputSerializer,
        responses={200: FathomConnectionSerializer, **errors(400, 401, 413, 415)},
        description="Turn auto-queue on or off: queue each meeting the webhook announces.",
    )
    def patch(self, request: Request) -> Response:
        data = AutoQueueInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        accounts.fathom_account_set_auto_queue(
            user=request.user, auto_queue=data.validated_data["auto_queue"]
        )
        return Response(accounts.fathom_account_status(request.user))

    @extend_schema(
        operation_id="credentials_fathom_disconnect",
        responses={204: None, **errors(401)},
        description=(
            "Delete the webhook registered in Fathom, then forget the key, the webhook secret "
            "and auto-queue. Meetings stay."
        ),
    )
    def delete(self, request: Request) -> Response:
        accounts.fathom_account_disconnect(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _webhook_settings(request: Request) -> dict[str, Any]:
    return accounts.fathom_webhook_settings(
        user=request.user, absolute_uri=request.build_absolute_uri
    )


@method_decorator(hide_secrets_in_debug, name="dispatch")
@method_decorator(sensitive_post_parameters("secret"), name="dispatch")
class FathomWebhookSettingsView(AccountApiView):
    """Where Fathom should send the caller's webhook, and the secret it signs with."""

    @extend_schema(
        operation_id="credentials_fathom_webhook_show",
        responses={200: WebhookSettingsSerializer, **errors(400, 401)},
        description="The URL to register in Fathom, and whether its secret is stored.",
    )
    def get(self, request: Request) -> Response:
        return Response(_webhook_settings(request))

    @extend_schema(
        operation_id="credentials_fathom_webhook_set",
        request=WebhookSecretInputSerializer,
        responses={200: WebhookSettingsSerializer, **errors(400, 401, 413, 415)},
        description="Store the `whsec_...` secret Fathom showed for this webhook.",
    )
    @sensitive_variables()  # `data`: a serializer's repr shows its input
    def put(self, request: Request) -> Response:
        data = WebhookSecretInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        accounts.fathom_account_set_webhook_secret(
            user=request.user, secret=data.validated_data["secret"]
        )
        return Response(_webhook_settings(request))


# The stored key is decrypted on the way (importing.meetings_sync).
@method_decorator(hide_secrets_in_debug, name="dispatch")
class MeetingSyncView(AccountApiView):
    throttle_classes = [FathomSyncThrottle]

    @extend_schema(
        operation_id="meetings_sync",
        request=None,
        responses={200: SyncResultSerializer, **errors(400, 401, 429), **FATHOM_ERRORS},
        description=(
            "Import all your meetings from Fathom; safe to repeat. A sync that fails "
            "changes nothing. Imported meetings are not queued."
        ),
    )
    def post(self, request: Request) -> Response:
        result = importing.meetings_sync(user=request.user)
        return Response(
            {"created": result.created, "updated": result.updated, "unchanged": result.unchanged}
        )
