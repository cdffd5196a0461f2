"""The gateway's one settings object: a YAML file plus environment variables, validated once at start.

Secrets never sit in the file: a provider's key is named by the environment variable that holds it
(`api_key_env`). Environment variables override the file for what differs per deployment
(`KAFKA_BOOTSTRAP_SERVERS`, `GATEWAY_TOPIC_PREFIX`).
"""

from __future__ import annotations

import hashlib
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import TopicNames

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "gateway.yaml"
LOCAL_KAFKA = "127.0.0.1:19092"


class ConfigError(Exception):
    """The configuration is invalid; the message names the file and the bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewayKey(_Strict):
    """A bearer key the ingress accepts, and the project its traffic belongs to."""

    project: str = Field(min_length=1)
    admin: bool = Field(False, description="Reads every project's analytics (not only its own).")
    key: str | None = Field(None, min_length=8, description="Literal key: for local development only.")
    key_env: str | None = Field(None, description="Environment variable that holds the key.")

    @model_validator(mode="after")
    def _one_source(self) -> GatewayKey:
        if (self.key is None) == (self.key_env is None):
            raise ValueError("give exactly one of 'key' or 'key_env'")
        return self

    def resolve(self) -> str | None:
        return self.key if self.key is not None else os.environ.get(self.key_env or "")


class Provider(_Strict):
    kind: Literal["openai", "openai_compatible", "azure", "anthropic", "gemini", "bedrock"]
    base_url: str
    api_key_env: str | None = Field(None, description="Bedrock: the secret access key's variable.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Opening a connection to the provider.")
    first_byte_timeout_s: float | None = Field(None, gt=0, description="A slower first byte is a retryable failure.")
    idle_timeout_s: float = Field(60.0, gt=0, description="Longest silence between two reads of an answer or "
                                  "stream; the whole call is bounded by the request's deadline only.")
    max_connections: int = Field(4096, ge=1)
    keepalive_s: float = Field(4.0, gt=0, description="How long an idle connection is kept for reuse: under the "
                               "5 s after which uvicorn (vLLM, most Python servers) and Node close one, so a "
                               "burst never meets connections the server has already closed.")
    api_version: str | None = Field(None, description="Azure OpenAI's api-version.")
    auth: Literal["key", "entra"] = Field("key", description="Azure: api-key header, or an Entra ID bearer token.")
    region: str | None = Field(None, description="Bedrock's AWS region.")
    access_key_id_env: str = "AWS_ACCESS_KEY_ID"
    session_token_env: str = "AWS_SESSION_TOKEN"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _kind_needs(self) -> Provider:
        if self.kind == "bedrock" and not self.region:
            raise ValueError("a bedrock provider needs 'region'")
        return self

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def options(self) -> dict[str, str]:
        """Per-kind settings an adapter needs (Bedrock's key id and token are read from the environment)."""
        options = {"auth": self.auth}
        if self.api_version:
            options["api_version"] = self.api_version
        if self.kind == "bedrock":
            options["region"] = self.region or ""
            options["access_key_id"] = os.environ.get(self.access_key_id_env, "")
            options["session_token"] = os.environ.get(self.session_token_env, "")
        return options

    @property
    def enabled(self) -> bool:
        """A provider that names a key variable is usable only when that variable is set."""
        if self.kind == "bedrock" and not os.environ.get(self.access_key_id_env):
            return False
        return self.api_key_env is None or bool(self.api_key())


class Route(_Strict):
    """Where a model name is served: a configured provider and the model name that provider knows."""

    provider: str
    upstream_model: str | None = None


class Retry(_Strict):
    attempts_per_model: int = Field(2, ge=1, le=10)
    backoff_ms: float = Field(50, ge=0)
    max_backoff_ms: float = Field(2000, ge=0)
    max_retry_after_s: float = Field(2.0, ge=0, description="A longer retry-after moves on to the fallback.")


class RouteTarget(_Strict):
    """One place a route may send a request: a provider and the model (or deployment) it knows."""

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1, description="The model or deployment name the provider knows.")
    name: str | None = Field(None, min_length=1, description="How responses and rules name it (default: model).")
    catalog: str | None = Field(None, description="The catalog entry for price and capabilities (default: model).")
    weight: float = Field(1.0, gt=0, description="loadbalance: its share.")

    @property
    def label(self) -> str:
        return self.name or self.model


class Rule(_Strict):
    """`when` every condition holds (field: value, or field: {op: value}), the request goes to `then`: a
    target of this route, another route, or a model."""

    when: dict[str, Any] = Field(min_length=1)
    then: str = Field(min_length=1)


class RouteSpec(_Strict):
    """A virtual model: its targets and how one is chosen, with its own retry policy and hedge."""

    strategy: Literal["fallback", "loadbalance", "cheapest", "fastest", "capability", "rules"] = "fallback"
    targets: list[RouteTarget] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    default: str | None = Field(None, description="rules: where a request no rule matched goes.")
    retry: Retry | None = Field(None, description="Default: the gateway's `retry`.")
    retry_same_on: list[Literal["rate_limited", "server_error", "timeout", "connection"]] = Field(
        default_factory=lambda: ["rate_limited", "server_error", "timeout", "connection"],
        description="The errors tried again on the same target (up to retry.attempts_per_model); the others "
                    "move on to the next target at once.")
    connect_timeout_s: float | None = Field(None, gt=0, description="Per attempt, over the provider's own.")
    first_byte_timeout_s: float | None = Field(None, gt=0, description="Per attempt, over the provider's own.")
    idle_timeout_s: float | None = Field(None, gt=0, description="Between two chunks, over the provider's own.")
    deadline_s: float | None = Field(None, gt=0, description="The whole request, if shorter than the caller's.")
    hedge_after_ms: int | None = Field(None, gt=0, description="Without a first byte by then, race the next target.")
    exploration: float = Field(0.1, ge=0, le=1, description="fastest: how often another target is tried first.")

    @model_validator(mode="after")
    def _coherent(self) -> RouteSpec:
        if self.strategy == "rules":
            if not self.rules or self.default is None:
                raise ValueError("a rules route needs 'rules' and a 'default'")
        elif not self.targets:
            raise ValueError(f"a {self.strategy} route needs 'targets'")
        labels = [t.label for t in self.targets]
        if len(set(labels)) != len(labels):
            raise ValueError("target names must differ (give 'name' to two targets of one model)")
        return self


class RoutesFile(_Strict):
    """The routes file (`routes_file`): read again whenever it changes; a bad one is refused, the routes
    already loaded keep serving."""

    routes: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:/-]{1,100}$")], RouteSpec] = Field(default_factory=dict)


class Ingress(_Strict):
    max_body_bytes: int = Field(1 << 20, ge=1024)
    request_timeout_s: float = Field(120.0, gt=0)
    max_timeout_s: float = Field(600.0, gt=0)


class Router(_Strict):
    max_in_flight: int = Field(4096, ge=1, description="Open streams are mostly waiting: 1,000 at once held "
                               "130 MB of the router (bench.streaming).")
    max_in_flight_per_partition: int = Field(1024, ge=1, description="So one tenant's burst leaves room for others.")
    drain_s: float = Field(30.0, ge=0, description="On a rebalance, how long revoked partitions' requests may finish.")
    answered_window_s: float = Field(120.0, gt=0, description="How far back a router remembers answered requests "
                                     "(the usage topic), so a redelivered one is not run again.")
    effects_retry_s: float = Field(60.0, gt=0, description="How long a request's effects are retried while Kafka is "
                                   "away before the router stops (uncommitted, so the request is redelivered).")
    group_id: str | None = Field(None, description="Default: the topic prefix + 'router'.")
    commit_interval_ms: int = Field(100, ge=10)
    circuit_failures: int = Field(5, ge=1, description="Retryable failures in a row that open a route's circuit.")
    circuit_cooldown_s: float = Field(30.0, gt=0, description="How long an open circuit skips its route.")


class Service(_Strict):
    """A service that sends requests straight onto the requests topic (no HTTP): its requests must say
    `key_id: service:<name>` and this project, and may only ask for answers on these reply topics (the
    gateway creates them). Anything else on the requests topic that the ingress did not sign is refused."""

    project: str = Field(min_length=1)
    reply_topics: list[str] = Field(min_length=1)
    reply_partitions: int = Field(3, ge=1, description="Partitions of the reply topics the gateway creates.")
    secret_env: str | None = Field(None, description="The variable holding the service's secret: each request "
                                   "must then carry its signature (`infra.secrets.service_signature`), and "
                                   "none is answered while the variable is not set.")

    def secret(self) -> str | None:
        return os.environ.get(self.secret_env) if self.secret_env else None


class Limit(_Strict):
    """A rate limit: requests and / or tokens per minute, counted per project and, within it, per key, user
    or model (`match` narrows it to one of them)."""

    id: str | None = Field(None, min_length=1, description="Names it for the admin API (default: its position).")
    scope: Literal["project", "team", "key", "user", "model"]
    project: str | None = Field(None, description="Only this project (default: each project).")
    match: str | None = Field(None, description="Only this key id, user or model (default: each).")
    requests_per_minute: int | None = Field(None, gt=0)
    tokens_per_minute: int | None = Field(None, gt=0)
    burst: int | None = Field(None, gt=0, description="Bucket size (default: the per-minute amount).")

    @model_validator(mode="after")
    def _some_rate(self) -> Limit:
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            raise ValueError("give requests_per_minute and / or tokens_per_minute")
        return self


class Budget(_Strict):
    """A cost budget in USD per period (a UTC day or month, or a rolling window of `window_hours`); hard
    ones refuse requests once spent, soft ones only alert."""

    name: str = Field(min_length=1)
    scope: Literal["project", "team", "key", "user", "model"] = "project"
    project: str | None = None
    match: str | None = None
    usd: float = Field(gt=0)
    period: Literal["day", "month", "rolling"]
    window_hours: float | None = Field(None, gt=0, le=24 * 92, validate_default=True,
                                       description="A rolling budget's window (and only a rolling one's).")
    hard: bool = True
    thresholds: list[Annotated[float, Field(gt=0, le=2)]] = Field(default_factory=lambda: [0.5, 0.8, 1.0])

    @field_validator("window_hours")
    @classmethod
    def _window_for_rolling(cls, value: float | None, info: ValidationInfo) -> float | None:
        rolling = info.data.get("period") == "rolling"
        if rolling and value is None:
            raise ValueError("a rolling budget needs window_hours")
        if value is not None and not rolling:
            raise ValueError("only a rolling budget has window_hours")
        return value

    @property
    def window_ms(self) -> int:
        return int((self.window_hours or 0) * 3_600_000)


CacheMode = Literal["exact", "semantic", "off"]


class CacheStore(_Strict):
    """Where the cache keeps its entries: the embedded Qdrant Edge shard (the default, owned by the
    `gateway cache` process), or a Qdrant server through qdrant-client (`url`; `local_path` runs
    qdrant-client's local mode, the same API, for tests)."""

    path: Path | None = Field(None, description="The embedded shard's directory; default GATEWAY_HOME/cache.")
    qdrant_url: str | None = None
    qdrant_api_key_env: str | None = None
    qdrant_local_path: Path | None = None
    collection: str = "gateway-cache"


class Cache(_Strict):
    """Exact and semantic caching of chat answers (a view of the completions topic, served by `gateway cache`)."""

    mode: CacheMode = Field("off", description="The default for requests that name no mode.")
    models: dict[str, CacheMode] = Field(default_factory=dict, description="Per model (or route) defaults.")
    ttl_s: int = Field(86400, gt=0, le=7 * 86400, description="At most the completions topic's retention.")
    threshold: float = Field(0.975, gt=0, le=1, description="The least cosine similarity of a semantic hit "
                             "(chosen by bench/cache_quality.py: under 1 % false hits).")
    max_temperature: float = Field(1.0, ge=0, description="Above this, a request is not served semantically.")
    semantic_with_tools: bool = False
    semantic_with_seed: bool = False
    url: str = Field("http://127.0.0.1:8091", description="Where routers reach `gateway cache`.")
    lookup_timeout_ms: int = Field(300, gt=0, description="A slower lookup is a miss that says 'skipped'.")
    store: CacheStore = CacheStore()
    dimensions: int = Field(384, ge=8, le=4096, description="The embeddings' size (the store is made for it).")
    embeddings_model: str | None = Field(None, description="Embed with this model, served by the gateway itself "
                                         "(sent `dimensions`), instead of the bundled multilingual-e5-small.")
    gateway_url: str = Field("http://127.0.0.1:8080", description="Where `gateway cache` asks for embeddings.")
    gateway_key_env: str = Field("GATEWAY_CACHE_KEY", description="The variable holding the gateway key it uses.")

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML reads a bare `off` as false

    @field_validator("models", mode="before")
    @classmethod
    def _yaml_off_per_model(cls, value: Any) -> Any:
        return {k: "off" if v is False else v for k, v in value.items()} if isinstance(value, dict) else value

    def mode_for(self, model: str) -> CacheMode:
        return self.models.get(model, self.mode)


class Webhook(_Strict):
    url: str
    secret_env: str = Field(description="The variable holding the HMAC secret the body is signed with.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    def secret(self) -> str:
        return os.environ.get(self.secret_env, "")


class Alerts(_Strict):
    webhooks: list[Webhook] = Field(default_factory=list)


class Kafka(_Strict):
    """The size chain (a request body fits a record, a record fits what producers send and topics keep),
    and how every client connects: PLAINTEXT, or TLS and / or SASL to a secured cluster (MSK, Confluent
    Cloud, Aiven). Secrets only by the name of the variable that holds them."""

    max_message_bytes: int = Field(32 << 20, ge=1 << 20, le=96 << 20,
                                   description="Producers' max_request_size and the topics' max.message.bytes.")
    compression: Literal["zstd", "lz4", "gzip", "none"] = Field(
        "zstd", description="Records written in batches and kept long: attempts, usage, completions, control topics.")
    request_path_compression: Literal["zstd", "lz4", "gzip", "none"] = Field(
        "none", description="Requests and replies, written a record at a time on the caller's path: compressing a "
                            "batch of one costs both hops time (0.2-0.4 ms at one connection with zstd) and saves "
                            "little; zstd or lz4 keeps large prompts smaller on disk.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username_env: str | None = Field(None, description="The variable holding the SASL user name.")
    sasl_password_env: str | None = Field(None, description="The variable holding the SASL password.")
    oauth_token_url: str | None = Field(None, description="OAUTHBEARER: the identity provider's token endpoint "
                                        "(OAuth 2.0 client credentials).")
    oauth_client_id_env: str | None = Field(None, description="OAUTHBEARER: the variable holding the client id.")
    oauth_client_secret_env: str | None = Field(None, description="OAUTHBEARER: the variable holding the "
                                                "client secret.")
    oauth_scope: str | None = Field(None, description="OAUTHBEARER: the scope asked for, if the provider wants one.")
    ssl_cafile: Path | None = Field(None, description="The CA bundle the brokers' certificates are checked with.")
    ssl_certfile: Path | None = Field(None, description="A client certificate (mutual TLS).")
    ssl_keyfile: Path | None = Field(None, description="The client certificate's key.")
    ssl_key_password_env: str | None = Field(None, description="The variable holding the key's password.")

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no file {value}")
        return value

    @model_validator(mode="after")
    def _coherent_security(self) -> Kafka:
        sasl = self.security_protocol.startswith("SASL")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(f"sasl_mechanism: {self.security_protocol} needs one (PLAIN, SCRAM-SHA-256/512, "
                             "OAUTHBEARER)")
        if not sasl and (self.sasl_mechanism or self.sasl_username_env or self.sasl_password_env
                         or self.oauth_token_url):
            raise ValueError(f"sasl_mechanism: SASL settings need security_protocol SASL_PLAINTEXT or SASL_SSL, "
                             f"not {self.security_protocol}")
        oauth = self.sasl_mechanism == "OAUTHBEARER"
        if oauth and not (self.oauth_token_url or "").startswith(("http://", "https://")):
            raise ValueError("oauth_token_url: OAUTHBEARER needs the token endpoint's http(s) URL")
        if not oauth and (self.oauth_token_url or self.oauth_client_id_env or self.oauth_client_secret_env):
            raise ValueError("oauth_token_url: OAuth settings need sasl_mechanism OAUTHBEARER")
        needed = ("oauth_client_id_env", "oauth_client_secret_env") if oauth else ("sasl_username_env",
                                                                                    "sasl_password_env")
        for field in needed if sasl else ():
            variable = getattr(self, field)
            if not variable:
                raise ValueError(f"{field}: {self.sasl_mechanism} needs the variable that holds it")
            if not os.environ.get(variable):
                raise ValueError(f"{field}: the variable {variable} is not set")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile: a client certificate goes with its ssl_keyfile")
        if not self.security_protocol.endswith("SSL") and (self.ssl_cafile or self.ssl_certfile):
            raise ValueError(f"ssl_cafile: TLS files need security_protocol SSL or SASL_SSL, "
                             f"not {self.security_protocol}")
        return self


class Analytics(_Strict):
    """The analytics process (`gateway analytics`): the sink into ClickHouse and the query API."""

    url: str = Field("http://127.0.0.1:8090", description="Where the ingress reaches the query API.")
    path: Path | None = Field(None, description="The chDB directory; default GATEWAY_HOME/analytics.")
    batch_max: int = Field(20000, ge=1, description="Most events in one insert.")
    linger_ms: int = Field(1000, ge=0, description="How long a batch gathers events before its insert.")
    dedup_window_h: float = Field(48, gt=0, description="How far back the sink remembers ids it inserted.")


class GatewayConfig(_Strict):
    keys: list[GatewayKey] = Field(min_length=1)
    providers: dict[str, Provider] = Field(default_factory=dict)
    models: dict[str, Route] = Field(default_factory=dict)
    catalog: Path | None = Field(None, description="A model catalog that replaces the built-in one.")
    ingress: Ingress = Ingress()
    router: Router = Router()
    retry: Retry = Retry()
    kafka: Kafka = Kafka()
    services: dict[str, Service] = Field(default_factory=dict)
    analytics: Analytics = Analytics()
    limits: list[Limit] = Field(default_factory=list)
    budgets: list[Budget] = Field(default_factory=list)
    alerts: Alerts = Alerts()
    cache: Cache = Cache()
    routes_file: Path | None = Field(None, description="Routes as virtual models (relative to this file); "
                                     "changes apply without a restart.")

    @model_validator(mode="after")
    def _routes_name_providers(self) -> GatewayConfig:
        for model, route in self.models.items():
            if route.provider not in self.providers:
                raise ValueError(f"models.{model}.provider: {route.provider!r} is not under 'providers'")
        return self

    @model_validator(mode="after")
    def _bodies_fit_records(self) -> GatewayConfig:
        # A request record carries the body plus its ids and headers: leave it 64 KiB of room.
        if self.ingress.max_body_bytes + (64 << 10) > self.kafka.max_message_bytes:
            raise ValueError(f"ingress.max_body_bytes ({self.ingress.max_body_bytes}) must be at least 64 KiB "
                             f"below kafka.max_message_bytes ({self.kafka.max_message_bytes})")
        return self


class Environment(BaseSettings):
    """What the environment decides: where the config file is and which Kafka to use."""

    model_config = SettingsConfigDict(extra="ignore")

    gateway_config: Path = DEFAULT_CONFIG
    kafka_bootstrap_servers: str | None = None
    gateway_topic_prefix: str = "gw."
    gateway_secret: str | None = Field(None, description="Seals provider keys that callers bring; signs requests.")
    gateway_secret_previous: str | None = Field(None, description="Older secrets, comma-separated: still accepted.")
    clickhouse_url: str | None = Field(None, description="A ClickHouse server instead of the embedded chDB.")


class Settings:
    """The validated configuration plus the environment, read once per process."""

    def __init__(self, config: GatewayConfig, env: Environment, path: Path) -> None:
        self.config = config
        self.env = env
        self.path = path

    @property
    def uses_local_kafka(self) -> bool:
        return not self.env.kafka_bootstrap_servers

    @property
    def bootstrap_servers(self) -> str:
        return self.env.kafka_bootstrap_servers or LOCAL_KAFKA

    @property
    def routes_path(self) -> Path | None:
        """The routes file, relative to the configuration file."""
        routes_file = self.config.routes_file
        return None if routes_file is None else (self.path.parent / routes_file)

    @cached_property
    def topics(self) -> TopicNames:
        return TopicNames.for_prefix(self.env.gateway_topic_prefix)

    @cached_property
    def admin_keys(self) -> set[str]:
        """sha256 of the keys marked `admin`."""
        return {key_digest(secret) for entry in self.config.keys if entry.admin and (secret := entry.resolve())}

    @property
    def previous_secrets(self) -> list[str]:
        return [s.strip() for s in (self.env.gateway_secret_previous or "").split(",") if s.strip()]

    @cached_property
    def signing_secret(self) -> str:
        """GATEWAY_SECRET, or on a one-machine stack a secret made once in GATEWAY_HOME (set GATEWAY_SECRET
        when ingress and routers run on several hosts)."""
        from infra.secrets import local_secret

        return self.env.gateway_secret or local_secret()

    @property
    def router_group(self) -> str:
        return self.config.router.group_id or self.env.gateway_topic_prefix + "router"

    @cached_property
    def key_projects(self) -> dict[str, str]:
        """sha256 of each gateway key that is set, to its project: keys are compared by digest only."""
        out: dict[str, str] = {}
        for entry in self.config.keys:
            secret = entry.resolve()
            if secret:
                out[key_digest(secret)] = entry.project
        return out


def key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def load(path: Path | None = None) -> Settings:
    env = Environment()
    path = Path(path or env.gateway_config)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid config {path}:\n{_describe(exc)}") from exc
    return Settings(config, env, path)
