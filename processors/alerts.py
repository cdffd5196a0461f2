"""Budget alerts to webhooks: every `BudgetThresholdCrossed` on the budget-alerts topic is POSTed as JSON
to each configured webhook, signed (`x-gateway-signature: sha256=<HMAC-SHA256 of the body>` with the
webhook's secret) and retried with backoff until it is accepted, off the request path. The consumer
group (`<prefix>alerts`) commits an alert only after every webhook took it, so an alert is delivered once
per period across restarts; a crash between a delivery and its commit can repeat it, and the
`x-gateway-alert-id` header lets a receiver drop the repeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import Any

import aiohttp
import orjson

from infra import kafka_clients
from infra.config import Settings, Webhook
from schemas import codec

log = logging.getLogger("gateway.alerts")
SIGNATURE_HEADER = "x-gateway-signature"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class AlertSender:
    def __init__(self, settings: Settings) -> None:
        self._webhooks = settings.config.alerts.webhooks
        self._consumer = kafka_clients.consumer(settings.bootstrap_servers, settings.config.kafka,
                                                group_id=settings.env.gateway_topic_prefix + "alerts",
                                                auto_offset_reset="earliest")
        self._topic = settings.topics.budget_alerts

    async def run(self, stopping: asyncio.Event) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await self._consumer.start()
            await kafka_clients.subscribe(self._consumer, [self._topic])
            try:
                while not stopping.is_set():
                    batch = await self._consumer.getmany(timeout_ms=500)
                    for records in batch.values():
                        for record in records:
                            if record.value is not None:
                                _, alert = codec.decode(record.headers, record.value)
                                await self._deliver(session, (record.key or b"").decode(), alert, stopping)
                    if batch:
                        await self._consumer.commit()
            finally:
                await self._consumer.stop()

    async def _deliver(self, session: aiohttp.ClientSession, alert_id: str, alert: dict[str, Any],
                       stopping: asyncio.Event) -> None:
        body = orjson.dumps({"type": "budget.threshold_crossed", "id": alert_id, **alert})
        await asyncio.gather(*(self._post(session, hook, alert_id, body, stopping) for hook in self._webhooks))

    async def _post(self, session: aiohttp.ClientSession, hook: Webhook, alert_id: str, body: bytes,
                    stopping: asyncio.Event) -> None:
        headers = {"content-type": "application/json", "x-gateway-alert-id": alert_id,
                   SIGNATURE_HEADER: signature(hook.secret(), body)}
        delay = 0.5
        while not stopping.is_set():
            try:
                async with session.post(hook.url, data=body, headers=headers) as response:
                    if response.status < 300:
                        return
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}"
            log.warning("alert %s to %s not accepted (%s); retrying in %.1fs", alert_id, hook.url, problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)
