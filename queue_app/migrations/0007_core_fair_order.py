"""The line's ordering keys in the fair-share layout, the counts the queue state keeps,
and what events carry for viewers' windows (protocol version 2)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# services/ordering.py's layout, frozen here: (round << 44) + arrival * 2**16.
ROUND_SHIFT = 44
KEY_GAP = 1 << 16


def assign_ordering_keys(apps, schema_editor):
    """Give the line's entries keys in the new layout, in their current order; with fair
    ordering each owner's k-th waiting entry goes to round k. Then the state's counts and
    each owner's counters, which the services keep from now on."""
    QueueEntry = apps.get_model("queue_app", "QueueEntry")
    QueueState = apps.get_model("queue_app", "QueueState")
    QueueOwner = apps.get_model("queue_app", "QueueOwner")
    fair = getattr(settings, "QUEUE_ORDERING", "fair") == "fair"
    queued = list(QueueEntry.objects.filter(status="queued").order_by("order_key", "created_at"))
    owners = {}
    for arrival, entry in enumerate(queued, start=1):
        waiting, last_round = owners.get(entry.owner_id, (0, 0))
        round_ = waiting + 1 if fair else 0
        entry.order_key = (round_ << ROUND_SHIFT) + arrival * KEY_GAP
        owners[entry.owner_id] = (waiting + 1, round_)
    QueueEntry.objects.bulk_update(queued, ["order_key"], batch_size=1000)
    for owner_id, (waiting, last_round) in owners.items():
        QueueOwner.objects.update_or_create(
            owner_id=owner_id, defaults={"waiting": waiting, "last_round": last_round}
        )
    state, _ = QueueState.objects.get_or_create(pk=1)
    state.waiting = len(queued)
    state.running = QueueEntry.objects.filter(status="running").count()
    state.retrying = QueueEntry.objects.filter(status="retrying").count()
    state.next_arrival = len(queued) + 1
    state.top_round = max((last for _, last in owners.values()), default=0)
    state.head_round = min((entry.order_key >> ROUND_SHIFT for entry in queued), default=0)
    state.save()


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("queue_app", "0006_users_activity_share"),
    ]

    operations = [
        migrations.CreateModel(
            name="QueueOwner",
            fields=[
                (
                    "owner",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                ("waiting", models.PositiveIntegerField(default=0)),
                ("last_round", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.AddField(
            model_name="queuestate",
            name="head_round",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="queuestate",
            name="next_arrival",
            field=models.BigIntegerField(default=1),
        ),
        migrations.AddField(
            model_name="queuestate",
            name="retrying",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="queuestate",
            name="running",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="queuestate",
            name="top_round",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="queuestate",
            name="waiting",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="queueevent",
            name="window",
            field=models.JSONField(default=dict),
        ),
        migrations.RunPython(assign_ordering_keys, migrations.RunPython.noop),
    ]
