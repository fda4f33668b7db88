"""The collector policy of the long-running commands: survivors of a full collection frozen,
a whole collection when the frozen set has grown `regrow` times."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app.platform.collector import FreezeSurvivors


@pytest.fixture
def survivors() -> Iterator[FreezeSurvivors]:
    policy = FreezeSurvivors(regrow=2.0)
    policy.install()
    gc.disable()  # only the collections the test makes
    try:
        yield policy
    finally:
        gc.enable()
        policy.uninstall()


def tracked(obj: object) -> bool:
    """Whether the collector still walks `obj` (frozen objects are not in gc.get_objects())."""
    return any(o is obj for o in gc.get_objects())


def test_what_survives_a_full_collection_is_not_walked_again(survivors: FreezeSurvivors) -> None:
    live = [[i] for i in range(1000)]
    assert tracked(live)
    gc.collect()
    assert not tracked(live)  # frozen: the next full collection skips it
    assert gc.get_freeze_count() >= survivors.whole_at > 0
    newer = [{"n": i} for i in range(10)]
    gc.collect()
    assert not tracked(newer) and live[999] == [999]  # frozen objects stay intact


def test_garbage_is_collected_before_anything_is_frozen(survivors: FreezeSurvivors) -> None:
    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]  # a cycle only the collector frees
    marker = id(a)
    del a, b
    gc.collect()
    assert all(id(o) != marker for o in gc.get_objects())
    assert survivors.whole_collections == 1


def test_a_frozen_set_grown_past_regrow_is_walked_whole_again(
    survivors: FreezeSurvivors,
) -> None:
    gc.collect()
    first = survivors.whole_at
    assert first > 0
    grown = [[i] for i in range(2 * first + 1000)]  # the live set more than doubles
    gc.collect()  # sees its newcomers would more than double it, and unfreezes
    assert gc.get_freeze_count() == 0 and tracked(grown)
    gc.collect()  # a whole collection, whose survivors are frozen again
    assert survivors.whole_collections == 2
    assert survivors.whole_at > 2 * first and not tracked(grown)


def test_a_set_that_only_churned_is_not_walked_whole(survivors: FreezeSurvivors) -> None:
    gc.collect()
    first = survivors.whole_at
    for _ in range(3):  # 60 % more each time, the last ones freed meanwhile: 280 % counted
        churn = [[i] for i in range(first * 6 // 10)]
        gc.collect()
        del churn
    assert survivors.frozen <= 2 * first  # the count was checked and corrected
    assert survivors.whole_collections == 1 and gc.get_freeze_count() > 0


def test_uninstall_unfreezes_everything() -> None:
    policy = FreezeSurvivors()
    policy.install()
    gc.collect()
    assert gc.get_freeze_count() > 0
    policy.uninstall()
    assert gc.get_freeze_count() == 0
    with pytest.raises(ValueError):
        FreezeSurvivors(regrow=1.0)
