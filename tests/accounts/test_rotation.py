"""Rotating CREDENTIAL_ENCRYPTION_KEYS: re-encrypt with a new key, then drop the old one."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from queue_app import accounts, crypto
from queue_app.models import FathomAccount
from tests.accounts.conftest import ALICE_KEY, BOB_KEY
from tests.accounts.fakes import FakeFathom

pytestmark = pytest.mark.django_db

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def connect(user, api_key: str) -> None:
    accounts.fathom_account_set_key(
        user=user, api_key=api_key, client=FakeFathom(api_key, valid_keys={api_key})
    )


def test_rotation_re_encrypts_so_the_old_key_can_be_removed(settings, alice, bob):
    old, new = crypto.generate_key(), crypto.generate_key()
    settings.CREDENTIAL_ENCRYPTION_KEYS = [old]
    connect(alice, ALICE_KEY)
    connect(bob, BOB_KEY)
    accounts.fathom_account_set_webhook_secret(user=alice, secret=SECRET)
    before = dict(FathomAccount.objects.values_list("pk", "api_key_encrypted"))

    # Step 1: the new key goes first, the old one stays to decrypt.
    settings.CREDENTIAL_ENCRYPTION_KEYS = [new, old]
    assert accounts.fathom_api_key_for(alice) == ALICE_KEY
    call_command("rotate_credential_keys", stdout=io.StringIO())

    # Step 2: the old key is removed; everything still decrypts.
    settings.CREDENTIAL_ENCRYPTION_KEYS = [new]
    assert accounts.fathom_api_key_for(alice) == ALICE_KEY
    assert accounts.fathom_api_key_for(bob) == BOB_KEY
    alice_account = FathomAccount.objects.get(user=alice)
    assert crypto.decrypt(alice_account.webhook_secret_encrypted) == SECRET
    after = dict(FathomAccount.objects.values_list("pk", "api_key_encrypted"))
    assert all(after[pk] != before[pk] for pk in before)


def test_without_rotation_removing_the_old_key_loses_access(settings, alice):
    # What the rotation above protects against: the same steps without the command fail.
    old, new = crypto.generate_key(), crypto.generate_key()
    settings.CREDENTIAL_ENCRYPTION_KEYS = [old]
    connect(alice, ALICE_KEY)

    settings.CREDENTIAL_ENCRYPTION_KEYS = [new]

    with pytest.raises(crypto.CredentialDecryptError) as raised:
        accounts.fathom_api_key_for(alice)
    assert ALICE_KEY not in str(raised.value)


def test_rotation_reports_what_no_key_decrypts_and_fails(settings, alice, bob):
    lost, kept = crypto.generate_key(), crypto.generate_key()
    settings.CREDENTIAL_ENCRYPTION_KEYS = [lost]
    connect(alice, ALICE_KEY)
    settings.CREDENTIAL_ENCRYPTION_KEYS = [kept]
    connect(bob, BOB_KEY)

    with pytest.raises(CommandError, match="1 account"):
        call_command("rotate_credential_keys", stdout=io.StringIO())
    assert accounts.fathom_api_key_for(bob) == BOB_KEY


def test_storing_a_key_without_encryption_keys_fails_clearly(settings, alice):
    from django.core.exceptions import ImproperlyConfigured

    settings.CREDENTIAL_ENCRYPTION_KEYS = []

    with pytest.raises(ImproperlyConfigured, match="CREDENTIAL_ENCRYPTION_KEYS"):
        connect(alice, ALICE_KEY)
    assert not FathomAccount.objects.exists()
