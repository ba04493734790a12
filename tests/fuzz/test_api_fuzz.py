"""Fuzzing every operation of the OpenAPI document (/api/schema/) with schemathesis.

Each operation gets generated requests, valid and not, as an anonymous caller, a user and
staff. Whatever they send: no 5xx, only status codes and content types the document lists
for the operation, bodies that match its schemas, and no ERROR log record. The schema is
thus checked against the code as much as the code against the schema.

The requests go in process to Django's WSGI handler (the same views and middleware as
under daphne), so they share the test's database transaction. The seed is fixed and the
generation derandomized, so a run finds the same things every time.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.conftest import KNOWN_VALUES, FuzzWorld
from tests.helpers import clear_cache

pytestmark = pytest.mark.django_db

CONFIG = schemathesis.Config.from_dict(
    {"seed": 11, "generation": {"deterministic": True, "database": "none"}}
)


def examples(count: int) -> settings:
    """At most `count` generated requests per operation (besides schemathesis's explicit
    examples and boundary cases), no deadline: the run is bounded, not each request.

    The fixture's rows are shared by the examples of one operation, as a client's requests
    would be (function-scoped on purpose); each operation starts from a fresh copy.
    """
    return settings(
        max_examples=count,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_wsgi(
    "/api/schema/?format=json", get_wsgi_application(), config=CONFIG
)


def with_known_values(generated: Any) -> st.SearchStrategy:
    """`generated` as it is, or with some of its fields replaced by real values."""
    if not isinstance(generated, dict):
        return st.just(generated)
    choices = {
        name: st.sampled_from(KNOWN_VALUES[name]) for name in generated if name in KNOWN_VALUES
    }
    if not choices:
        return st.just(generated)
    replaced = st.fixed_dictionaries({}, optional=choices).map(lambda known: {**generated, **known})
    return st.one_of(replaced, st.just(generated))


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: Any) -> st.SearchStrategy:
    return with_known_values(path_parameters)


@schema.hook
def flatmap_case(context: Any, case: Any) -> st.SearchStrategy:
    # JSON bodies only: in a form, schemathesis's WSGI transport (werkzeug) would take the
    # strings of a list for files to open.
    if case.media_type != "application/json":
        return st.just(case)

    def with_body(body: Any) -> Any:
        case.body = body
        return case

    return with_known_values(case.body).map(with_body)


def call_and_check(case: Any, caplog: pytest.LogCaptureFixture, token: str | None) -> None:
    # Throttles and Fathom rate-limit buckets count in Redis across requests: cleared, so
    # that every request reaches the view instead of a 429.
    clear_cache()
    caplog.clear()
    headers = {"Authorization": f"Token {token}"} if token else None
    with caplog.at_level(logging.WARNING):
        case.call_and_validate(headers=headers, checks=CHECKS)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# Anonymous: every operation but two answers 401 before reading the input, so few examples;
# what varies is the credentials schemathesis makes up (tokens, session cookies).
@schema.parametrize()
@examples(10)
def test_anonymous(case: Any, fuzz_world: FuzzWorld, caplog: pytest.LogCaptureFixture) -> None:
    call_and_check(case, caplog, None)


@schema.parametrize()
@examples(25)
def test_signed_in_user(case: Any, fuzz_world: FuzzWorld, caplog: pytest.LogCaptureFixture) -> None:
    call_and_check(case, caplog, fuzz_world.user_token)


# Staff: the operations where staff differ from a user (staff only, or anyone's entries).
@schema.include(path_regex=r"^/api/(queue|events)").parametrize()
@examples(20)
def test_staff(case: Any, fuzz_world: FuzzWorld, caplog: pytest.LogCaptureFixture) -> None:
    call_and_check(case, caplog, fuzz_world.staff_token)
