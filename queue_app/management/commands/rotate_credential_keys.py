"""Re-encrypt every stored credential with the first key of CREDENTIAL_ENCRYPTION_KEYS.

Run after putting a new key first; once it succeeds, the old keys can be removed.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from queue_app.accounts import fathom_accounts_rotate_keys


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored Fathom key and webhook secret with the first key in "
        "CREDENTIAL_ENCRYPTION_KEYS (see docs/credentials.md)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rotated, failed = fathom_accounts_rotate_keys()
        self.stdout.write(f"Re-encrypted {rotated} Fathom account(s) with the first key.")
        if failed:
            # Removing the old keys now would lose these for good: say so, and fail.
            raise CommandError(
                f"{len(failed)} account(s) could not be decrypted with any configured key "
                f"(ids {', '.join(map(str, failed))}); keep the old keys until they are "
                "connected again."
            )
