"""The answered-requests view as a fold: ids from usage headers, remembered for a window."""

from __future__ import annotations

from infra.log_view import Change
from processors.answered import AnsweredIds, fold_answered


def usage(request_id: str, at_ms: int) -> Change:
    return Change(b"proj-a", "UsageRecorded", None, at_ms, 0, {"request-id": request_id.encode()})


def test_an_answered_request_is_remembered_for_the_window_only() -> None:
    answered = AnsweredIds(window_ms=1000)
    fold_answered(answered, usage("gw-1", 0))
    fold_answered(answered, usage("gw-2", 900))

    assert "gw-1" in answered and "gw-2" in answered
    fold_answered(answered, usage("gw-3", 1500))
    assert "gw-1" not in answered and "gw-2" in answered and "gw-3" in answered


def test_a_usage_event_without_the_header_is_ignored() -> None:
    answered = AnsweredIds(window_ms=1000)
    fold_answered(answered, Change(b"proj-a", "UsageRecorded", None, 0, 0, {}))

    assert "gw-1" not in answered
