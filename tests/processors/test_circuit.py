"""A route that keeps failing is skipped for a cool-down, then tried once before it closes again."""

from __future__ import annotations

from processors.circuit import CircuitBreaker

ROUTE = ("openai", "gpt-4o")


def test_it_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(failures=3, cooldown_s=30)
    for now in (1, 2):
        breaker.record(ROUTE, False, now)
    breaker.record(ROUTE, True, 3)  # a success in between resets the count
    for now in (4, 5):
        breaker.record(ROUTE, False, now)
    assert breaker.allow(ROUTE, 6)

    breaker.record(ROUTE, False, 6)
    assert not breaker.allow(ROUTE, 7)
    assert breaker.allow(("openai", "gpt-4o-mini"), 7)  # other routes are not affected


def test_after_the_cooldown_one_trial_decides() -> None:
    breaker = CircuitBreaker(failures=1, cooldown_s=30)
    breaker.record(ROUTE, False, 0)

    assert not breaker.allow(ROUTE, 29)
    assert breaker.allow(ROUTE, 31)
    assert not breaker.allow(ROUTE, 31.5)  # one trial at a time

    breaker.record(ROUTE, False, 32)  # the trial failed: open for another cool-down
    assert not breaker.allow(ROUTE, 40)
    assert breaker.allow(ROUTE, 63)
    breaker.record(ROUTE, True, 63)
    assert breaker.allow(ROUTE, 63.1)


def test_a_trial_that_decides_nothing_is_given_back() -> None:
    breaker = CircuitBreaker(failures=1, cooldown_s=30)
    breaker.record(ROUTE, False, 0)
    permit = breaker.allow(ROUTE, 31)
    assert permit == "trial"
    breaker.release(ROUTE, permit)  # refused before the call, cancelled, or raised
    assert breaker.allow(ROUTE, 31.1) == "trial"


def test_a_closed_permit_released_does_not_free_another_requests_trial() -> None:
    breaker = CircuitBreaker(failures=1, cooldown_s=30)
    closed = breaker.allow(ROUTE, 0)
    breaker.record(ROUTE, False, 0)
    assert breaker.allow(ROUTE, 31) == "trial"
    breaker.release(ROUTE, closed)
    assert breaker.allow(ROUTE, 31.1) is None
