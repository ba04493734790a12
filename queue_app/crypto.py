"""Encryption of stored secrets (users' Fathom API keys, webhook secrets) with MultiFernet.

The keys come from settings.CREDENTIAL_ENCRYPTION_KEYS: the first encrypts, all decrypt.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# An AccountError (503 `credential_unreadable`); defined with the other errors.
from queue_app.errors import CredentialDecryptError


def _fernet() -> MultiFernet:
    # Read on every call (a MultiFernet is cheap to build) so that tests and a rotation
    # in progress always see the keys currently configured.
    keys = settings.CREDENTIAL_ENCRYPTION_KEYS
    if not keys:
        raise ImproperlyConfigured(
            "CREDENTIAL_ENCRYPTION_KEYS is not set: it is required to store or read users' "
            "Fathom API keys when DEBUG is off (see docs/credentials.md)."
        )
    return MultiFernet([Fernet(key) for key in keys])


def generate_key() -> str:
    """A new random Fernet key, as CREDENTIAL_ENCRYPTION_KEYS holds them."""
    return Fernet.generate_key().decode()


def encrypt(plaintext: str) -> str:
    """The Fernet token of `plaintext`, encrypted with the first configured key."""
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """The plaintext of a token made by `encrypt`, with whichever configured key fits."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        # The default message: it is shown to the credential's owner (and logged).
        raise CredentialDecryptError() from None


def rotate(token: str) -> str:
    """The same plaintext re-encrypted with the first key (MultiFernet.rotate)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise CredentialDecryptError() from None
