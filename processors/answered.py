"""Which requests have been answered, as a view of the usage topic (`infra/log_view.py`): every finished
request has exactly one usage event id, and usage is produced after the reply, so a request whose id is
here was answered. A router that is handed a request again (its first router was killed before it
committed, or a rebalance outran the drain) skips it instead of calling the provider and billing twice.

The view holds the ids of the last `router.answered_window_s` (restored from that far back at start):
a request redelivered later than that has long passed its deadline and is answered as expired, without
an upstream call. It reads keys and headers only (the usage event carries its request id in the
`request-id` header) and trails the topic by up to 100 ms (a few fetches a second, however busy), so
following every router's usage costs little.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from infra import kafka_clients
from infra.config import Settings
from infra.log_view import Change, LogView

REQUEST_ID_HEADER = "request-id"


class AnsweredIds:
    """Request ids in the order they were answered, bounded by a time window."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._ids: OrderedDict[str, int] = OrderedDict()

    def add(self, request_id: str, at_ms: int) -> None:
        self._ids[request_id] = at_ms
        self._ids.move_to_end(request_id)
        while self._ids and next(iter(self._ids.values())) < at_ms - self.window_ms:
            self._ids.popitem(last=False)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._ids


def fold_answered(answered: AnsweredIds, change: Change) -> None:
    request_id = change.headers.get(REQUEST_ID_HEADER)
    if request_id:
        answered.add(request_id.decode(), change.timestamp_ms)


def answered_view(settings: Settings) -> LogView[AnsweredIds]:
    window_ms = int(settings.config.router.answered_window_s * 1000)
    return LogView(settings.bootstrap_servers, settings.topics.usage, fold_answered, AnsweredIds(window_ms),
                   settings.config.kafka, since_ms=time.time_ns() // 1_000_000 - window_ms, decode=False,
                   lag_ms=kafka_clients.TRAILING_MS)
