"""The reply-partition lease as a fold: the last claim holds a partition, a tombstone frees it, an
expired lease is free, and an owner gets its own partition back."""

from __future__ import annotations

from infra.log_view import Change
from ingress.reply_lease import Lease, fold_leases, free_partition


def claim(partition: int, owner: str, expires: int, offset: int) -> Change:
    return Change(str(partition).encode(), "ReplyPartitionClaimed",
                  {"partition": partition, "owner": owner, "claimed_at_ms": 0, "expires_at_ms": expires}, 0, offset, {})


def test_the_last_claim_of_a_partition_holds_it_as_compaction_keeps_it() -> None:
    leases: dict[int, Lease] = {}
    for change in (claim(0, "a", 100, 1), claim(0, "b", 100, 2)):
        fold_leases(leases, change)

    assert leases[0].owner == "b"  # a, who claimed first, sees b's claim after its own: it tries another


def test_a_tombstone_frees_a_partition() -> None:
    leases: dict[int, Lease] = {}
    fold_leases(leases, claim(3, "a", 100, 1))
    fold_leases(leases, Change(b"3", None, None, 0, 2, {}))

    assert leases == {}


def test_the_lowest_free_partition_is_taken_and_expired_leases_are_free() -> None:
    leases = {0: Lease("a", 1000, 1), 1: Lease("b", 10, 2)}

    assert free_partition(leases, "c", 8, now_ms=500, skip=set()) == 1
    assert free_partition(leases, "c", 8, now_ms=5, skip=set()) == 2
    assert free_partition(leases, "c", 8, now_ms=5, skip={2}) == 3


def test_an_owner_takes_its_own_partition_back_before_its_lease_expires() -> None:
    leases = {0: Lease("a", 1000, 1), 5: Lease("restarted", 1000, 2)}

    assert free_partition(leases, "restarted", 8, now_ms=500, skip=set()) == 5


def test_no_partition_is_free_when_every_one_is_held() -> None:
    leases = {p: Lease(f"i{p}", 1000, p) for p in range(8)}

    assert free_partition(leases, "new", 8, now_ms=0, skip=set()) is None
