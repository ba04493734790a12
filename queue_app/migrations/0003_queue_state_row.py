"""The queue's singleton state row, so that reads never have to create it."""

from django.db import migrations


def create_queue_state(apps, schema_editor):
    QueueState = apps.get_model("queue_app", "QueueState")
    QueueState.objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("queue_app", "0002_fathom_accounts")]

    operations = [migrations.RunPython(create_queue_state, migrations.RunPython.noop)]
