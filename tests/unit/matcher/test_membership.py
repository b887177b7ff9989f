"""Who owns which matcher partition: rendezvous hashing over the replicas
heard of lately, the same answer on every replica."""
from __future__ import annotations

import pytest

from services.matcher.membership import Membership

P = 256
DEAD_AFTER = 3.0


def replicas(names, now=100.0, dead_after=DEAD_AFTER) -> dict[str, Membership]:
    """One Membership per replica, each having heard every replica (itself too)."""
    views = {name: Membership(name, dead_after) for name in names}
    for view in views.values():
        for name in names:
            view.heard(name, now)
    return views


def owners(view: Membership, now: float = 100.0) -> list[str]:
    return [view.owner(p, now) for p in range(P)]


def test_every_replica_computes_the_same_owners():
    names = ["m-a", "m-b", "m-c"]
    views = replicas(names)
    first, *others = views.values()
    for view in others:
        assert owners(view) == owners(first)
    # the order heartbeats came in does not matter either
    late = Membership("m-b", DEAD_AFTER)
    for name in reversed(names):
        late.heard(name, 100.0)
    assert owners(late) == owners(first)


def test_every_partition_has_exactly_one_owner():
    views = replicas(["m-a", "m-b", "m-c", "m-d"])
    owned = {name: view.owned(P, 100.0) for name, view in views.items()}
    all_owned = [p for parts in owned.values() for p in parts]
    assert sorted(all_owned) == list(range(P))  # covered, and no partition twice
    # each replica gets a share, not everything and not nothing
    assert all(P // 8 < len(parts) < P // 2 for parts in owned.values()), {k: len(v) for k, v in owned.items()}


def test_a_replica_alone_owns_everything():
    alone = Membership("m-a", DEAD_AFTER)
    assert alone.alive(0.0) == ["m-a"]
    assert alone.owned(P, 0.0) == set(range(P))


def test_adding_a_replica_moves_only_its_share():
    before = replicas(["m-a", "m-b", "m-c"])["m-a"]
    old = owners(before)
    after = replicas(["m-a", "m-b", "m-c", "m-d"])["m-a"]
    new = owners(after)
    moved = [p for p in range(P) if old[p] != new[p]]
    # a partition only ever moves to the newcomer; the rest stay put
    assert all(new[p] == "m-d" for p in moved)
    assert moved == [p for p in range(P) if new[p] == "m-d"]  # and the newcomer gets only those
    assert 0 < len(moved) < P // 2


def test_losing_a_replica_moves_only_its_partitions():
    view = replicas(["m-a", "m-b", "m-c"])["m-a"]
    old = owners(view)
    view.heard("m-a", 110.0)
    view.heard("m-b", 110.0)  # m-c falls silent after 100.0
    new = owners(view, 110.0)
    for p in range(P):
        if old[p] != "m-c":
            assert new[p] == old[p]
        else:
            assert new[p] in ("m-a", "m-b")


def test_a_replica_not_heard_of_for_dead_after_is_dropped():
    view = Membership("m-a", DEAD_AFTER)
    assert view.heard("m-a", 0.0) is True
    assert view.heard("m-b", 0.0) is True
    assert view.heard("m-b", 1.0) is False  # known already
    assert view.alive(1.0 + DEAD_AFTER) == ["m-a", "m-b"]  # exactly dead_after: still alive
    assert view.forget_dead(1.0 + DEAD_AFTER) == []
    assert view.alive(1.1 + DEAD_AFTER) == ["m-a"]  # out of the ownership at once
    assert view.forget_dead(1.1 + DEAD_AFTER) == ["m-b"]
    assert view.forget_dead(2.0 + DEAD_AFTER) == []  # forgotten once
    # a dropped replica that comes back is new again
    assert view.heard("m-b", 10.0) is True
    assert view.alive(10.0) == ["m-a", "m-b"]


def test_a_replica_never_drops_itself():
    view = Membership("m-a", DEAD_AFTER)
    view.heard("m-a", 0.0)
    assert view.forget_dead(1000.0) == []
    assert view.alive(1000.0) == ["m-a"]
    assert view.owned(P, 1000.0) == set(range(P))


@pytest.mark.parametrize("count", [2, 5, 9])
def test_views_that_heard_the_same_heartbeats_agree_on_the_owned_sets(count):
    names = [f"matcher-{i}" for i in range(count)]
    views = replicas(names)
    owned = [view.owned(P, 100.0) for view in views.values()]
    assert sum(len(parts) for parts in owned) == P
    for i, mine in enumerate(owned):
        for theirs in owned[i + 1:]:
            assert not mine & theirs
