"""Every topic of the gateway, in one place: name, partitions and configuration.

Names carry a prefix (`GATEWAY_TOPIC_PREFIX`, default `gw.`) so several deployments, or test runs,
share one cluster without seeing each other's events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    suffix: str
    partitions: int
    key: str
    events: tuple[str, ...]
    config: dict[str, str] = field(default_factory=dict)


def kept(days: float) -> dict[str, str]:
    """A log kept for a time (requests, audit events)."""
    return {"retention.ms": str(int(days * DAY_MS)), "cleanup.policy": "delete"}


def sized_for(brokers: int) -> tuple[int, dict[str, str]]:
    """Replicas and settings for a cluster of this many brokers: three copies, two of which must hold a
    record before it is acknowledged (`acks=all`), where there are three brokers or more; one on one."""
    replicas = min(3, brokers)
    return replicas, ({"min.insync.replicas": "2"} if replicas >= 3 else {})


# State that only its latest value per key matters for (leases, keys, templates, alerts): compacted.
COMPACTED = {"cleanup.policy": "compact", "segment.ms": str(3600 * 1000)}


# Keyed by request id: one busy project spreads over every router, and a request's RequestCancelled
# (same key) lands on the partition, so the worker, that runs it.
REQUESTS = TopicSpec(
    "requests", 6, key="request_id",
    events=("RequestReceived", "EmbeddingsRequested", "ImagesRequested", "RequestCancelled"),
    config=kept(7),
)
REPLIES = TopicSpec(
    "replies", 8, key="request_id",
    events=("ResponseChunk", "ResponseCompleted", "EmbeddingsCompleted", "ImagesCompleted", "RequestFailed"),
    config=kept(1 / 24),
)
ATTEMPTS = TopicSpec(
    "attempts", 3, key="request_id", events=("AttemptFinished",),
    config=kept(30),
)
USAGE = TopicSpec(
    "usage", 3, key="project", events=("UsageRecorded",),
    config=kept(30),
)

UNDELIVERABLE = TopicSpec(
    "undeliverable", 1, key="request_id", events=("RequestFailed",),
    config=kept(30),
)

REPLY_LEASES = TopicSpec(
    "reply-leases", 1, key="partition", events=("ReplyPartitionClaimed",),
    config=COMPACTED,
)

KEYS = TopicSpec(
    "keys", 1, key="key_id", events=("GatewayKeyChanged",),
    config=COMPACTED,
)

TEMPLATES = TopicSpec(
    "templates", 1, key="name:version", events=("PromptTemplateChanged",),
    config=COMPACTED,
)

# Requests of projects under a rate limit or budget pass through the gatekeeper first: keyed by project,
# with as many partitions as `usage`, so the gatekeeper that admits a project's requests also owns the
# usage partition that settles them (co-partitioned by the same key and partitioner).
ADMISSION = TopicSpec(
    "admission", 3, key="project", events=("RequestReceived", "EmbeddingsRequested", "ImagesRequested"),
    config=kept(7),
)
REJECTIONS = TopicSpec(
    "rejections", 3, key="project", events=("RequestRejected",),
    config=kept(30),
)
BUDGET_ALERTS = TopicSpec(
    "budget-alerts", 1, key="budget:project:period:threshold", events=("BudgetThresholdCrossed",),
    config=COMPACTED,
)

POLICIES = TopicSpec("policies", 1, key="kind:id", events=("PolicyChanged",), config=COMPACTED)
TEAMS = TopicSpec("teams", 1, key="team", events=("TeamChanged",), config=COMPACTED)
ROUTES = TopicSpec("routes", 1, key="name", events=("RouteChanged",), config=COMPACTED)
# What the cache is folded from (a purge travels with the answers it drops, so a replay rebuilds it).
COMPLETIONS = TopicSpec("completions", 3, key="project", events=("CompletionRecorded", "CachePurged"),
                        config=kept(7))

ALL = (REQUESTS, REPLIES, ATTEMPTS, USAGE, UNDELIVERABLE, REPLY_LEASES, KEYS, TEMPLATES, ADMISSION, REJECTIONS,
       BUDGET_ALERTS, POLICIES, TEAMS, COMPLETIONS, ROUTES)


@dataclass(frozen=True)
class TopicNames:
    """The concrete topic names for one prefix."""

    requests: str
    replies: str
    attempts: str
    usage: str
    undeliverable: str
    reply_leases: str
    keys: str
    templates: str
    admission: str
    rejections: str
    budget_alerts: str
    policies: str
    teams: str
    completions: str
    routes: str

    def of(self, spec: TopicSpec) -> str:
        return str(getattr(self, spec.suffix.replace("-", "_")))

    @classmethod
    def for_prefix(cls, prefix: str) -> TopicNames:
        return cls(**{spec.suffix.replace("-", "_"): prefix + spec.suffix for spec in ALL})
