"""The Django admin, where staff run the queue.

Nothing here saves a queue row. The entry admin is read-only; its actions and the queue
controls (pause, resume, clear) call queue_app.services, so each admin change is one
transaction that appends a QueueEvent and reaches every socket, like a change from the API.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Case, F, IntegerField, OrderBy, QuerySet, Value, When
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from queue_app import errors, selectors
from queue_app.models import (
    ACTIVE_STATUSES,
    Activity,
    EntryStatus,
    Meeting,
    QueueEntry,
    QueueEvent,
    TransferAttempt,
)
from queue_app.services import line
from queue_app.services.activity import MAX_NOTE_LENGTH

# The error column shows this much; the detail view shows all of it.
ERROR_PREVIEW_CHARS = 80


# --- small formatting helpers ------------------------------------------------------------


def format_duration(delta: timedelta | None) -> str | None:
    """'2h 05m', '3m 07s', '12s': short enough for a list column."""
    if delta is None:
        return None
    seconds = max(int(delta.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def entry_wait(entry: QueueEntry) -> timedelta | None:
    """How long the entry waited in line: until now if it still waits, else until it started
    or was taken out.

    QueueEntry has no queued_at, so the wait counts from created_at; for an entry that was
    retried or put back after its worker died, that includes its earlier run.
    """
    if entry.status == EntryStatus.QUEUED:
        return timezone.now() - entry.created_at
    if entry.started_at is not None:
        return entry.started_at - entry.created_at
    if entry.finished_at is not None:  # cancelled before it ever started
        return entry.finished_at - entry.created_at
    return None


def _entries(count: int) -> str:
    return f"{count} {'entry' if count == 1 else 'entries'}"


# --- actions on selected entries -----------------------------------------------------------


class QueueActionForm(ActionForm):
    """The action bar, plus the target place for 'Move to position N'."""

    position = forms.CharField(
        required=False,
        label="Position N:",
        # A CharField, not an IntegerField: a bad value must become a clear error message,
        # and an invalid action form only says "No action selected".
        widget=forms.TextInput(attrs={"size": 4, "inputmode": "numeric"}),
    )
    # Checked by the service (activity.clean_note), whose refusal is reported as a message.
    note = forms.CharField(
        required=False,
        label="Note to the owners (cancel, move):",
        widget=forms.TextInput(attrs={"size": 30, "maxlength": MAX_NOTE_LENGTH}),
    )


def _apply_to_each(
    modeladmin: QueueEntryAdmin,
    request: HttpRequest,
    entries: Iterable[QueueEntry],
    *,
    service: Callable[[QueueEntry], object],
    done: str,
    failed: str,
) -> None:
    """Run one service call per entry and report how many succeeded and which failed, why.

    Each call is its own transaction and event: one entry in the wrong state does not undo
    the others, and the report says exactly what happened.
    """
    succeeded = 0
    failures: list[str] = []
    for entry in entries:
        try:
            service(entry)
        except (errors.QueueError, errors.InvalidInput) as exc:
            failures.append(f"“{entry.meeting}” ({entry.owner.get_username()}): {exc}")
        else:
            succeeded += 1
            modeladmin.log_change(request, entry, f"{done} from the admin.")
    if succeeded:
        modeladmin.message_user(request, f"{done} {_entries(succeeded)}.", messages.SUCCESS)
    if failures:
        modeladmin.message_user(
            request,
            f"Could not {failed} {_entries(len(failures))}: " + "; ".join(failures),
            messages.ERROR,
        )


def _apply_as_one_change(
    modeladmin: QueueEntryAdmin,
    request: HttpRequest,
    entries: list[QueueEntry],
    *,
    service: Callable[..., line.BulkChange],
    done: str,
    failed: str,
    **extra: Any,
) -> None:
    """Run one bulk service over the entries (one transaction, one event) and report how
    many it changed and which it refused, why."""
    try:
        result = service(
            entry_ids=[entry.pk for entry in entries], owner=None, actor=request.user, **extra
        )
    except errors.InvalidInput as exc:  # a note too long: nothing changed
        modeladmin.message_user(request, f"Could not {failed}: {exc}", messages.ERROR)
        return
    by_id = {str(entry.pk): entry for entry in entries}
    for entry in result.entries:
        modeladmin.log_change(request, entry, f"{done} from the admin.")
    if result.entries:
        modeladmin.message_user(
            request, f"{done} {_entries(len(result.entries))}.", messages.SUCCESS
        )
    if result.refused:
        reasons = [
            f"“{by_id[r.id].meeting}” ({by_id[r.id].owner.get_username()}): {r.detail}"
            for r in result.refused
        ]
        modeladmin.message_user(
            request,
            f"Could not {failed} {_entries(len(reasons))}: " + "; ".join(reasons),
            messages.ERROR,
        )


def _in_line_order(queryset: QuerySet[QueueEntry]) -> list[QueueEntry]:
    return list(queryset.select_related("meeting", "owner").order_by("order_key", "created_at"))


@admin.action(description="Cancel selected entries", permissions=["operate"])
def cancel_entries(
    modeladmin: QueueEntryAdmin, request: HttpRequest, queryset: QuerySet[QueueEntry]
) -> None:
    _apply_as_one_change(
        modeladmin,
        request,
        _in_line_order(queryset),
        service=line.entries_cancel,
        done="Cancelled",
        failed="cancel",
        note=request.POST.get("note", ""),
    )


@admin.action(description="Retry selected failed or cancelled entries", permissions=["operate"])
def retry_entries(
    modeladmin: QueueEntryAdmin, request: HttpRequest, queryset: QuerySet[QueueEntry]
) -> None:
    _apply_as_one_change(
        modeladmin,
        request,
        _in_line_order(queryset),
        service=line.entries_retry,
        done="Retried",
        failed="retry",
    )


@admin.action(description="Move selected entries to the top", permissions=["operate"])
def move_to_top(
    modeladmin: QueueEntryAdmin, request: HttpRequest, queryset: QuerySet[QueueEntry]
) -> None:
    # Back to front, so the selected entries keep their order among themselves at the top.
    _apply_to_each(
        modeladmin,
        request,
        reversed(_in_line_order(queryset)),
        service=lambda entry: line.entry_move(
            entry_id=entry.pk, position="top", **_note_by(request)
        ),
        done="Moved to the top:",
        failed="move",
    )


@admin.action(description="Move selected entries to the bottom", permissions=["operate"])
def move_to_bottom(
    modeladmin: QueueEntryAdmin, request: HttpRequest, queryset: QuerySet[QueueEntry]
) -> None:
    # Front to back, so the selected entries keep their order among themselves at the end.
    _apply_to_each(
        modeladmin,
        request,
        _in_line_order(queryset),
        service=lambda entry: line.entry_move(
            entry_id=entry.pk, position="bottom", **_note_by(request)
        ),
        done="Moved to the bottom:",
        failed="move",
    )


def _note_by(request: HttpRequest) -> dict[str, Any]:
    """The note typed with an action or control, and who sends it."""
    return {"note": request.POST.get("note", ""), "actor": request.user}


def _position_from(raw: str) -> int | str:
    """A typed position: `top`, `bottom` or ASCII digits (int() would take "١٢" too);
    anything else is the service's InvalidPosition, reported like its other refusals."""
    raw = raw.strip()
    if raw in ("top", "bottom"):
        return raw
    if raw.isascii() and raw.isdigit() and len(raw) < 19:
        return int(raw)
    raise errors.InvalidPosition(f"Type a whole number, top or bottom (got “{raw[:20]}”).")


@admin.action(description="Move one selected entry to position N", permissions=["operate"])
def move_to_position(
    modeladmin: QueueEntryAdmin, request: HttpRequest, queryset: QuerySet[QueueEntry]
) -> None:
    raw = request.POST.get("position", "").strip()
    try:
        position = int(raw)
    except ValueError:
        modeladmin.message_user(
            request, f"Type a whole number in “Position N” (got “{raw}”).", messages.ERROR
        )
        return
    entries = _in_line_order(queryset)
    if len(entries) != 1:
        modeladmin.message_user(
            request, "Select exactly one entry to move to a position.", messages.ERROR
        )
        return
    _apply_to_each(
        modeladmin,
        request,
        entries,
        service=lambda entry: line.entry_move(
            entry_id=entry.pk, position=position, **_note_by(request)
        ),
        done=f"Moved to position {position}:",
        failed="move",
    )


# --- the queue list --------------------------------------------------------------------------


class QueueChangeList(ChangeList):
    """The entry changelist, with each queued entry's place in line filled in for the page."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        self.result_list = list(self.result_list)
        # Positions are derived from the page's order keys (selectors.positions_of: a count
        # and an index walk, never a query per row nor the whole line), and global, so a
        # filtered or searched list still shows true places.
        positions = selectors.positions_of(self.result_list)
        for entry in self.result_list:
            entry.line_position = positions.get(entry.pk)


# Links are https (Django 6's default for a scheme-less URL; said now, not warned about).
URL_FIELDS = {models.URLField: {"assume_scheme": "https"}}


class TransferAttemptInline(admin.TabularInline):
    """Every attempt at the entry's transfer, oldest first; read-only, like the entry."""

    model = TransferAttempt
    extra = 0
    can_delete = False
    ordering = ("started_at", "id")
    fields = (
        "number",
        "outcome",
        "error_kind",
        "error",
        "worker",
        "started_at",
        "finished_at",
        "bytes_moved",
        "retry_after_seconds",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(QueueEntry)
class QueueEntryAdmin(admin.ModelAdmin):
    formfield_overrides = URL_FIELDS
    """The global queue: read-only rows, changed only through actions that call services."""

    change_list_template = "admin/queue_app/queueentry/change_list.html"
    list_display = (
        "position",
        "title",
        "status_display",
        "owner",
        "attempts_display",
        "wait_time",
        "created_at",
        "started_at",
        "finished_at",
        "error",
    )
    list_display_links = ("title",)
    date_hierarchy = "created_at"
    list_filter = ("status", ("owner", admin.RelatedOnlyFieldListFilter))
    search_fields = ("meeting__title", "meeting__meeting_title", "owner__username")
    list_select_related = ("meeting", "owner")
    sortable_by = (
        "position",
        "title",
        "status_display",
        "owner",
        "attempts_display",
        "created_at",
        "started_at",
        "finished_at",
    )
    list_per_page = 100
    action_form = QueueActionForm
    actions = [cancel_entries, retry_entries, move_to_top, move_to_bottom, move_to_position]
    inlines = [TransferAttemptInline]
    fields = (
        "meeting_link",
        "owner",
        "status",
        "position",
        "attempts",
        "max_attempts",
        "wait_time",
        "last_error",
        "stage",
        "progress",
        "worker",
        "result_url",
        "next_attempt_at",
        "lease_expires_at",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
    )
    readonly_fields = fields

    # Rows change only through services (actions and the queue controls): a form save would
    # skip the queue lock and the event, and no socket would hear of it.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """May run the queue: staff holding the (otherwise unused) change permission."""
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return QueueChangeList

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        """The line in position order, then running and retrying, then finished, newest first."""
        group = Case(
            When(status=EntryStatus.QUEUED, then=Value(0)),
            When(status__in=ACTIVE_STATUSES, then=Value(1)),
            default=Value(2),
            output_field=IntegerField(),
        )
        # Finished entries keep their old order_key; ignore it so they sort by finish time.
        line_key = Case(When(status__in=ACTIVE_STATUSES, then=F("order_key")), default=None)
        return [
            group.asc(),
            line_key.asc(),
            OrderBy(F("finished_at"), descending=True, nulls_last=True),
            F("created_at").asc(),
        ]

    # --- columns ---

    # Sorting by position sorts by the line's key: queued entries in line order.
    @admin.display(description="Position", ordering="order_key")
    def position(self, entry: QueueEntry) -> int | None:
        if hasattr(entry, "line_position"):  # filled in for the whole page by QueueChangeList
            return entry.line_position
        return selectors.entry_position(entry)  # the detail view: one entry, one query

    @admin.display(description="Meeting", ordering="meeting__title")
    def title(self, entry: QueueEntry) -> str:
        return str(entry.meeting)

    @admin.display(description="Status", ordering="status")
    def status_display(self, entry: QueueEntry) -> str:
        label = entry.get_status_display()
        if entry.status == EntryStatus.RUNNING and entry.stage:
            return f"{label} ({entry.stage} {entry.progress:.0%})"
        if entry.status == EntryStatus.RETRYING and entry.next_attempt_at:
            return f"{label} (next at {entry.next_attempt_at:%H:%M:%S})"
        return label

    @admin.display(description="Attempts", ordering="attempts")
    def attempts_display(self, entry: QueueEntry) -> str:
        return f"{entry.attempts}/{entry.max_attempts}"

    @admin.display(description="Wait")
    def wait_time(self, entry: QueueEntry) -> str | None:
        return format_duration(entry_wait(entry))

    @admin.display(description="Error")
    def error(self, entry: QueueEntry) -> str:
        if not entry.last_error:
            return ""
        preview = Truncator(entry.last_error).chars(ERROR_PREVIEW_CHARS)
        return format_html('<span title="{}">{}</span>', entry.last_error, preview)

    @admin.display(description="Meeting")
    def meeting_link(self, entry: QueueEntry) -> str:
        url = reverse("admin:queue_app_meeting_change", args=[entry.meeting_id])
        return format_html('<a href="{}">{}</a>', url, entry.meeting)

    # --- the queue controls: pause, resume, clear ---

    def get_urls(self) -> list[Any]:
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        # Before the default URLs, whose "<object_id>/" would otherwise catch these.
        return [
            path("pause/", wrap(self.pause_view), name=f"{name}_pause"),
            path("resume/", wrap(self.resume_view), name=f"{name}_resume"),
            path("clear/", wrap(self.clear_view), name=f"{name}_clear"),
            path(
                "<uuid:entry_id>/operate/<str:verb>/",
                wrap(self.operate_view),
                name=f"{name}_operate",
            ),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {
            # Read before the list: the page's script follows the queue from this seq and
            # says the list is stale after any later change (admin_live.js).
            "queue_seq": selectors.current_seq(),
            "queue_paused": selectors.queue_state().paused,
            "queued_count": selectors.queued_entries().count(),
            "can_operate": self.has_operate_permission(request),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    def _changelist_url(self) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")

    def _queue_control(self, request: HttpRequest) -> HttpResponse | None:
        """The checks every queue control makes; a response when the request stops here."""
        if not self.has_operate_permission(request):
            raise PermissionDenied
        if request.method != "POST":  # a GET (a link, a prefetch) must never change the queue
            return HttpResponseNotAllowed(["POST"])
        return None

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {"can_operate": self.has_operate_permission(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context=context)

    def operate_view(self, request: HttpRequest, entry_id: Any, verb: str) -> HttpResponse:
        """The entry page's Retry, Cancel and Move buttons: the same services as the
        actions, one change and one event each; back to the entry with what happened."""
        if refused := self._queue_control(request):
            return refused
        calls = {
            "retry": lambda: line.entry_retry(entry_id=entry_id, actor=request.user),
            "cancel": lambda: line.entry_cancel(entry_id=entry_id, **_note_by(request)),
            "move": lambda: line.entry_move(
                entry_id=entry_id,
                position=_position_from(request.POST.get("position", "")),
                **_note_by(request),
            ),
        }
        if verb not in calls:
            raise Http404
        try:
            entry = calls[verb]()
        except (errors.QueueError, errors.InvalidInput) as exc:
            self.message_user(request, f"Could not {verb}: {exc}", messages.ERROR)
        else:
            self.log_change(request, entry, f"{verb.capitalize()} from the entry page.")
            done = {"retry": "Retried", "cancel": "Cancelled", "move": "Moved"}[verb]
            self.message_user(request, f"{done} “{entry.meeting}”.", messages.SUCCESS)
        return HttpResponseRedirect(
            reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[entry_id])
        )

    def pause_view(self, request: HttpRequest) -> HttpResponse:
        if refused := self._queue_control(request):
            return refused
        try:
            changed = line.queue_pause(note=request.POST.get("note", ""))
        except errors.InvalidInput as exc:
            self.message_user(request, f"Could not pause: {exc}", messages.ERROR)
            return HttpResponseRedirect(self._changelist_url())
        if changed:
            self.message_user(
                request,
                "Paused the queue: no new transfers start; running ones finish.",
                messages.SUCCESS,
            )
        else:
            self.message_user(request, "The queue was already paused.", messages.INFO)
        return HttpResponseRedirect(self._changelist_url())

    def resume_view(self, request: HttpRequest) -> HttpResponse:
        if refused := self._queue_control(request):
            return refused
        if line.queue_resume():
            self.message_user(request, "Resumed the queue.", messages.SUCCESS)
        else:
            self.message_user(request, "The queue was not paused.", messages.INFO)
        return HttpResponseRedirect(self._changelist_url())

    def clear_view(self, request: HttpRequest) -> HttpResponse:
        """GET asks for confirmation (clearing cannot be undone in one step); POST clears."""
        if not self.has_operate_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            try:
                cleared = line.queue_clear(**_note_by(request))
            except errors.InvalidInput as exc:
                self.message_user(request, f"Could not clear: {exc}", messages.ERROR)
                return HttpResponseRedirect(self._changelist_url())
            if cleared:
                self.message_user(
                    request,
                    f"Cleared the queue: cancelled {_entries(cleared)}. Running transfers go on.",
                    messages.SUCCESS,
                )
            else:
                self.message_user(request, "The queue was already empty.", messages.INFO)
            return HttpResponseRedirect(self._changelist_url())
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Clear the queue?",
            # Clear cancels what waits: the line and entries waiting to retry.
            "waiting_count": QueueEntry.objects.filter(
                status__in=[EntryStatus.QUEUED, EntryStatus.RETRYING]
            ).count(),
        }
        return TemplateResponse(
            request, "admin/queue_app/queueentry/clear_confirmation.html", context
        )


# --- meetings and events: browsable, never edited here ---------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """Browse only. Meetings come from Fathom and events from services; deleting a meeting
    would cascade to its queue entries behind the services' back."""

    formfield_overrides = URL_FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Meeting)
class MeetingAdmin(ReadOnlyAdmin):
    list_display = ("title", "owner", "recording_start_time", "duration", "recording_id")
    list_filter = (("owner", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("title", "meeting_title", "owner__username", "=recording_id")
    list_select_related = ("owner",)
    readonly_fields = ("queue_entries",)

    @admin.display(description="Duration", ordering="duration_seconds")
    def duration(self, meeting: Meeting) -> str | None:
        if meeting.duration_seconds is None:
            return None
        return format_duration(timedelta(seconds=meeting.duration_seconds))

    @admin.display(description="Queue entries")
    def queue_entries(self, meeting: Meeting) -> str:
        url = reverse("admin:queue_app_queueentry_changelist")
        return format_html('<a href="{}?meeting__id__exact={}">Show</a>', url, meeting.pk)


@admin.register(QueueEvent)
class QueueEventAdmin(ReadOnlyAdmin):
    list_display = (
        "seq",
        "update_type_code",
        "affected_user",
        "global_position",
        "queue_length",
        "paused",
        "created_at",
    )
    list_filter = ("update_type",)
    search_fields = ("affected_user__username",)
    list_select_related = ("affected_user",)
    ordering = ("-seq",)
    # The log grows with every change; skip the unfiltered COUNT(*) on each page.
    show_full_result_count = False
    fields = (
        "seq",
        "update_type",
        "entry",
        "affected_user",
        "global_position",
        "queue_length",
        "paused",
        "created_at",
        "payload_pretty",
    )
    readonly_fields = ("payload_pretty",)

    @admin.display(description="Update type", ordering="update_type")
    def update_type_code(self, event: QueueEvent) -> str:
        return event.update_type  # the name on the wire and in the docs, not its label

    @admin.display(description="Payload")
    def payload_pretty(self, event: QueueEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(event.payload, indent=2, sort_keys=True))


@admin.register(Activity)
class ActivityAdmin(ReadOnlyAdmin):
    """The owners' history (services.activity writes it with each change)."""

    list_display = ("created_at", "user", "title", "kind", "by", "actor", "note")
    list_filter = ("kind", "by")
    search_fields = ("user__username", "title", "note")
    list_select_related = ("user", "actor")
    ordering = ("-created_at", "-id")
    show_full_result_count = False
