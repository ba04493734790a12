"""Claims plan their statements once: queue_claim_next() runs with
plan_cache_mode = force_generic_plan.

plpgsql keeps a plan for each of its statements for the session, but one with parameters
is planned afresh at every call (a custom plan) for as long as its generic plan's
estimate stays above the custom plans' average; some of the claim's did, so every claim
planned them again under the queue lock. With the generic plans (each an index scan on
(status, order_key), as the custom ones), one process's claims at 100,000 waiting took
0.69-0.72 ms a round trip against 0.78-0.80 (alternated four times; bench/notes.md,
"Bound by the server").

The setting is in the function's definition (0012's, the clause added), not an ALTER
FUNCTION: CREATE OR REPLACE, which the migrations that change the function run, would
drop it. A function's SET clause restores that setting alone when it returns: the
synchronous_commit it sets for its transaction stays (tests/unit/test_claim_function.py).
"""

import importlib

from django.db import migrations

_TURNS = importlib.import_module("queue_app.migrations.0012_claims_take_turns")

_LANGUAGE = "LANGUAGE plpgsql AS $$"
assert _TURNS.CLAIM_NEXT.count(_LANGUAGE) == 1
CLAIM_NEXT = _TURNS.CLAIM_NEXT.replace(
    _LANGUAGE, "LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$"
)


def plan_once(apps, schema_editor) -> None:
    _TURNS._run(schema_editor, CLAIM_NEXT)


def plan_as_postgresql_chooses(apps, schema_editor) -> None:
    _TURNS._run(schema_editor, _TURNS.CLAIM_NEXT)  # without the clause, the setting


class Migration(migrations.Migration):
    dependencies = [
        ("queue_app", "0012_claims_take_turns"),
    ]

    operations = [migrations.RunPython(plan_once, plan_as_postgresql_chooses)]
