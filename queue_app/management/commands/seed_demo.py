"""Create the demo users (admin, alice, bob) and a few meetings for alice and bob.

Idempotent: users that exist keep their password, meetings are matched by recording id.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from queue_app.models import Meeting

DEMO_USERS = (("admin", True), ("alice", False), ("bob", False))
DEMO_MEETINGS = {
    "alice": ["Quarterly planning", "Design review: onboarding", "Customer call: Acme"],
    "bob": ["Weekly sync", "Hiring debrief", "Incident retrospective"],
}


class Command(BaseCommand):
    help = "Create the demo users and meetings (DEMO_PASSWORD, or a generated password)."

    def add_arguments(self, parser):
        parser.add_argument("--password", default="", help="Password for new demo users.")
        parser.add_argument(
            "--password-file",
            default="",
            help="Where to keep a generated password (mode 0600) when --password is not given.",
        )

    @transaction.atomic
    def handle(self, *args, password: str = "", password_file: str = "", **options) -> None:
        User = get_user_model()
        created = []
        generated = not password
        password = password or secrets.token_urlsafe(9)
        for username, is_staff in DEMO_USERS:
            user, new = User.objects.get_or_create(
                username=username,
                defaults={
                    "is_staff": is_staff,
                    "is_superuser": is_staff,
                    "email": f"{username}@example.com",
                },
            )
            if new:
                user.set_password(password)
                user.save()
                created.append(username)
        now = timezone.now()
        for username, titles in DEMO_MEETINGS.items():
            owner = User.objects.get(username=username)
            for index, title in enumerate(titles, start=1):
                recording_id = 1000 * (1 if username == "alice" else 2) + index
                start = now - timedelta(days=index, hours=2)
                Meeting.objects.get_or_create(
                    owner=owner,
                    recording_id=recording_id,
                    defaults={
                        "title": title,
                        "meeting_title": title,
                        "recording_start_time": start,
                        "recording_end_time": start + timedelta(minutes=30),
                        "duration_seconds": 1800,
                    },
                )
        if created:
            self.stdout.write(f"created demo users {', '.join(created)} with password {password}")
            if generated and password_file:
                path = Path(password_file)
                path.write_text(password + "\n")
                path.chmod(0o600)
        else:
            self.stdout.write("demo users already exist; their passwords are unchanged")
