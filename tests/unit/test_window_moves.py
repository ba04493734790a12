"""Which places an event says moved (protocol version 2): from the runs alone, an entry the
event did not carry finds its exact new position, however the line changed around it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from queue_app.events import position_runs, shifted


def expand(runs: list[list[int]]) -> list[int]:
    return [
        first + j * (step[0] if step else 1) for first, count, *step in runs for j in range(count)
    ]


@st.composite
def changes(draw) -> tuple[list[int], list[object]]:
    """A line of entries 0..n-1, then some of them leave and new ones join anywhere."""
    length = draw(st.integers(min_value=0, max_value=40))
    leaving = set(draw(st.lists(st.integers(0, max(length - 1, 0)), max_size=length)))
    after: list[object] = [entry for entry in range(length) if entry not in leaving]
    spaced = draw(st.booleans())  # fair share: every k-th place, then the back
    joining = draw(st.integers(min_value=0, max_value=25))
    for j in range(joining):
        if spaced and after:
            at = min((j + 1) * draw(st.integers(1, 4)), len(after))
        else:
            at = draw(st.integers(0, len(after)))
        after.insert(at, ("new", j))
    return [entry for entry in range(length) if entry not in leaving], after, sorted(leaving)


@given(changes())
def test_the_runs_give_every_untouched_entry_its_new_place(change) -> None:
    kept, after, leaving = change
    removed = [entry + 1 for entry in leaving]  # positions before: entry i stood at i + 1
    inserted = [index + 1 for index, entry in enumerate(after) if isinstance(entry, tuple)]
    moved = {"removed": position_runs(removed), "inserted": position_runs(inserted)}
    assert expand(moved["removed"]) == removed
    assert expand(moved["inserted"]) == inserted
    for entry in kept:
        assert shifted(entry + 1, moved) == after.index(entry) + 1


def test_a_bulk_is_a_run_however_long() -> None:
    assert position_runs(list(range(31, 2031))) == [[31, 2000]]
    spread = [201 + 201 * j for j in range(500)] + list(range(100_702, 102_202))
    assert position_runs(spread) == [[201, 500, 201], [100_702, 1500]]
    moved = {"removed": [], "inserted": position_runs(spread)}
    # Before the bulk: place 200 was the last of round one, 201 the first of round two.
    assert shifted(200, moved) == 200
    assert shifted(201, moved) == 202
    # The last of round 500 has 499 of the bulk ahead of it; the bulk's 500th is behind it.
    assert shifted(100_000, moved) == 100_000 + 499
