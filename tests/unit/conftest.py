"""Unit-test settings: a fast password hasher, since every test makes users."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # PBKDF2's default work factor costs about half a second per user, which is most of a
    # unit test's time; nothing here tests passwords.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
