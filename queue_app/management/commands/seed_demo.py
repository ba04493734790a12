"""Create the demo users (admin, alice, bob); with --sandbox-keys, connect alice and bob
to the local Fathom sandbox and import their meetings, so a new user can queue at once.

Idempotent: users that exist keep their password; meetings are matched by recording id.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from queue_app.accounts import AccountError, fathom_account_of, fathom_account_set_key
from queue_app.importing import meetings_sync

DEMO_USERS = (("admin", True), ("alice", False), ("bob", False))
# The keys the sandbox seeds (fathom_sandbox/README.md).
SANDBOX_KEYS = {"alice": "sandbox-key-alice", "bob": "sandbox-key-bob"}


class Command(BaseCommand):
    help = "Create the demo users (DEMO_PASSWORD, or a generated password) and their meetings."

    def add_arguments(self, parser):
        parser.add_argument("--password", default="", help="Password for new demo users.")
        parser.add_argument(
            "--password-file",
            default="",
            help="Where to keep a generated password (mode 0600) when --password is not given.",
        )
        parser.add_argument(
            "--sandbox-keys",
            action="store_true",
            help="Connect alice and bob to the Fathom sandbox and import their meetings.",
        )

    def handle(
        self,
        *args,
        password: str = "",
        password_file: str = "",
        sandbox_keys: bool = False,
        **options,
    ) -> None:
        users = self._create_users(password, password_file)
        if sandbox_keys:
            for username, api_key in SANDBOX_KEYS.items():
                self._connect(users[username], api_key)

    def _create_users(self, password: str, password_file: str) -> dict:
        User = get_user_model()
        generated = not password
        password = password or secrets.token_urlsafe(9)
        users, created = {}, []
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
            users[username] = user
        if created:
            self.stdout.write(f"created demo users {', '.join(created)} with password {password}")
            if generated and password_file:
                path = Path(password_file)
                path.write_text(password + "\n")
                path.chmod(0o600)
        else:
            self.stdout.write("demo users already exist; their passwords are unchanged")
        return users

    def _connect(self, user, api_key: str) -> None:
        try:
            if fathom_account_of(user) is None:
                fathom_account_set_key(user=user, api_key=api_key)
            result = meetings_sync(user=user)
        except AccountError as exc:
            raise CommandError(f"could not import {user.username}'s meetings: {exc}") from exc
        self.stdout.write(
            f"{user.username}: Fathom sandbox connected, {result.created} meetings imported"
        )
