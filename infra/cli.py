"""The `gateway` command: run the whole local stack, or one part of it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse

from aiokafka.errors import KafkaError

from infra import config as config_module
from infra import kafka_broker, kafka_clients, local_model, logs, tracing
from infra.paths import home


def _settings(args: argparse.Namespace) -> config_module.Settings:
    try:
        return config_module.load(args.config)
    except config_module.ConfigError as exc:
        sys.exit(f"gateway: {exc}")


def _uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


def cmd_kafka(args: argparse.Namespace) -> None:
    if args.action == "start":
        print(kafka_broker.start(count=args.nodes))
    elif args.action == "stop":
        print("stopped" if kafka_broker.stop(count=args.nodes) else "not running")
    else:
        print("running" if kafka_broker.running(count=args.nodes) else "not running")


def cmd_topics(args: argparse.Namespace) -> None:
    created = _ensure_topics(_settings(args))
    print("created: " + ", ".join(created) if created else "all topics exist")



def _create_topics(settings: config_module.Settings) -> list[str]:
    services = settings.config.services.values()
    return asyncio.run(kafka_clients.ensure_topics(
        settings.bootstrap_servers, settings.topics, kafka=settings.config.kafka,
        reply_topics={topic: s.reply_partitions for s in services for topic in s.reply_topics}))


def _ensure_topics(settings: config_module.Settings) -> list[str]:
    """Idempotent: every process makes sure the topics it needs exist before it uses them; Kafka that
    cannot be reached (or refuses the credentials) is a clear exit naming what to check."""
    try:
        created = _create_topics(settings)
    except KafkaError as exc:
        kafka = settings.config.kafka
        if kafka.security_protocol != "PLAINTEXT":
            credentials = f"{kafka.oauth_token_url} and the variables {kafka.oauth_client_id_env} / " \
                f"{kafka.oauth_client_secret_env}" if kafka.sasl_mechanism == "OAUTHBEARER" else \
                f"the variables {kafka.sasl_username_env} / {kafka.sasl_password_env}"
            sys.exit(f"gateway: cannot connect to Kafka at {settings.bootstrap_servers} over "
                     f"{kafka.security_protocol} ({type(exc).__name__}: {exc}); check kafka.security_protocol, "
                     f"kafka.sasl_mechanism, {credentials} and the TLS files")
        sys.exit(f"gateway: cannot reach Kafka at {settings.bootstrap_servers} ({exc}); "
                 "start it with `gateway kafka start` or set KAFKA_BOOTSTRAP_SERVERS")
    except kafka_clients.TopicTooSmall as exc:
        sys.exit(f"gateway: {exc}")
    if created:
        logging.getLogger("gateway").info("created topics %s", ", ".join(created))
    return created


def cmd_router(args: argparse.Namespace) -> None:
    from processors.router import serve

    settings = _settings(args)
    _ensure_topics(settings)
    _uvloop()
    tracing.configure("router")
    asyncio.run(serve(settings, args.instance_id, args.metrics_port))


def cmd_ingress(args: argparse.Namespace) -> None:
    import uvicorn

    from ingress.app import create_app

    settings = _settings(args)
    _ensure_topics(settings)
    tracing.configure("ingress")
    app = create_app(settings, args.reply_partition, args.instance_id)
    # proxy_headers off: nothing here reads the caller's address, and uvicorn's X-Forwarded-* middleware ran on
    # every request for it (1.1 % of the ingress's samples at 64 connections).
    config = uvicorn.Config(app, host=args.host, port=args.port, loop="uvloop", http="httptools", log_config=None,
                            log_level=args.log_level, access_log=False, timeout_graceful_shutdown=args.grace_s,
                            proxy_headers=False)
    server = uvicorn.Server(config)
    if not args.reuse_port:
        server.run()
        return
    # Several ingress processes on one port: each binds its own socket, the kernel spreads connections.
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((args.host, args.port))
    server.run(sockets=[sock])


def cmd_analytics(args: argparse.Namespace) -> None:
    import uvicorn

    from analytics.service import create_app

    settings = _settings(args)
    _ensure_topics(settings)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, loop="uvloop", http="httptools", log_config=None,
                log_level=args.log_level, access_log=False)


def cmd_cache(args: argparse.Namespace) -> None:
    from urllib.parse import urlsplit

    from aiohttp import web

    from processors.cache.service import create_app

    settings = _settings(args)
    _ensure_topics(settings)
    port = args.port or urlsplit(settings.config.cache.url).port or 8091
    web.run_app(create_app(settings), host=args.host, port=port, print=None, access_log=None)


def cmd_purge_cache(args: argparse.Namespace) -> None:
    from urllib.parse import urlencode

    from infra.admin_client import call

    query = urlencode({"project": args.project, **({"model": args.model} if args.model else {})})
    print(call("DELETE", f"/v1/admin/cache?{query}"))


def cmd_sql(args: argparse.Namespace) -> None:
    from analytics.client import run_sql

    settings = _settings(args)
    sys.exit(run_sql(settings, args.query, args.format))


def cmd_keys(args: argparse.Namespace) -> None:
    from infra.admin_client import keys_command

    keys_command(args.action, args.project, args.user, args.team, args.models, args.expires_in, args.key_id)


def cmd_policy(args: argparse.Namespace) -> None:
    from infra.admin_client import policy_command

    policy_command(args.command, args.action, args.spec if args.action == "set" else None,
                   args.spec if args.action == "remove" else None)


def cmd_check_config(args: argparse.Namespace) -> None:
    settings = _settings(args)
    enabled = [name for name, p in settings.config.providers.items() if p.enabled]
    print(f"{settings.path}: ok; providers enabled: {', '.join(enabled) or 'none'}")


def _example_curl(settings: config_module.Settings, url: str, local: bool) -> str:
    """A curl that works against this configuration: a key it accepts and a model it can serve."""
    from processors.routing import route_table

    entry = next((k for k in settings.config.keys if k.resolve()), settings.config.keys[0])
    key = entry.key if entry.key is not None else f"${entry.key_env}"
    servable = [t.model for t in route_table(settings).servable_models()]
    model = "smollm2-135m" if local or not servable else servable[0]
    return (f"curl {url}/v1/gateway/chat -H \"Authorization: Bearer {key}\" -H 'Content-Type: application/json' \\\n"
            f"  -d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": "
            f"\"Say hello in five words.\"}}], \"max_tokens\": 32}}'")


def cmd_up(args: argparse.Namespace) -> None:
    """Everything on one machine: broker, topics, local model (when no provider key is set), routers, ingress."""
    from infra.stack import Supervisor, default_counts

    settings = _settings(args)
    started_broker = False
    if settings.uses_local_kafka:
        started_broker = not kafka_broker.running()
        kafka_broker.start()
    _ensure_topics(settings)
    ingress, routers = default_counts()
    analytics = urllib.parse.urlsplit(settings.config.analytics.url)
    local_analytics = analytics.port if analytics.hostname in ("127.0.0.1", "localhost") else None
    cache = urllib.parse.urlsplit(settings.config.cache.url)
    local_cache = cache.port if cache.hostname in ("127.0.0.1", "localhost") else None
    supervisor = Supervisor(settings.path, args.host, args.port, args.ingress or ingress, args.routers or routers,
                            local_analytics, local_cache)
    # One Prometheus directory for every process of this host: any ingress's /metrics shows them all.
    metrics_dir = home() / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    cloud_keys = [n for n, p in settings.config.providers.items() if p.api_key_env and p.enabled]
    model_note = f"providers with keys: {', '.join(cloud_keys)}"
    local = None
    if not cloud_keys and "local" in settings.config.providers:
        local = local_model.start()
        model_note = "no provider key set: answering with the local SmolLM2-135M (llama.cpp)"
    try:
        supervisor.start()
        supervisor.wait_ready()
        print(f"\ngateway ready at {supervisor.url} ({model_note}; {args.ingress or ingress} ingress, "
              f"{args.routers or routers} router processes)\n\n{_example_curl(settings, supervisor.url, bool(local))}"
              "\n\nCtrl-C stops it.", flush=True)
        supervisor.watch()
    finally:
        supervisor.stop()
        if local is not None:
            local.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                local.wait(10)
        if started_broker:
            kafka_broker.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    parser.add_argument("--config", default=os.environ.get("GATEWAY_CONFIG"), help="the YAML configuration")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole local stack")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--ingress", type=int, default=0, help="ingress processes on the port (default: cores / 2)")
    up.add_argument("--routers", type=int, default=0, help="router processes (default: cores / 2)")
    up.set_defaults(func=cmd_up)

    kafka = sub.add_parser("kafka", help="the local Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status"])
    kafka.add_argument("--nodes", type=int, default=1, choices=[1, 3],
                       help="3: a local cluster of three combined nodes (topics get three replicas)")
    kafka.set_defaults(func=cmd_kafka)

    sub.add_parser("topics", help="create the topics that are missing").set_defaults(func=cmd_topics)
    sub.add_parser("check-config", help="validate the configuration").set_defaults(func=cmd_check_config)

    router = sub.add_parser("router", help="run a router worker")
    router.add_argument("--instance-id", help="static group membership: a restart takes its partitions back at once")
    router.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    router.set_defaults(func=cmd_router)

    ingress = sub.add_parser("ingress", help="run the HTTP ingress")
    ingress.add_argument("--host", default="127.0.0.1")
    ingress.add_argument("--port", type=int, default=8080)
    ingress.add_argument("--reply-partition", type=int, default=None,
                         help="read this reply partition instead of claiming one (no lease)")
    ingress.add_argument("--reuse-port", action="store_true", help="share the port with other ingress processes")
    ingress.add_argument("--instance-id", help="a restart with the same id takes its reply partition back at once")
    ingress.add_argument("--grace-s", type=float, default=30.0, help="seconds to finish accepted requests on SIGTERM")
    ingress.add_argument("--log-level", default=os.environ.get("GATEWAY_LOG_LEVEL", "warning"))
    ingress.set_defaults(func=cmd_ingress)

    analytics = sub.add_parser("analytics", help="the analytics sink and query API (owns the chDB store)")
    analytics.add_argument("--host", default="127.0.0.1")
    analytics.add_argument("--port", type=int, default=8090)
    analytics.add_argument("--log-level", default=os.environ.get("GATEWAY_LOG_LEVEL", "warning"))
    analytics.set_defaults(func=cmd_analytics)

    _admin_commands(sub)
    args = parser.parse_args(argv)
    logs.configure(os.environ.get("GATEWAY_LOG_LEVEL", "WARNING"), os.environ.get("GATEWAY_LOG_FORMAT", "json"))
    args.func(args)


def _admin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The cache process and the commands that speak to a running gateway (GATEWAY_URL, GATEWAY_ADMIN_KEY)."""
    cache = sub.add_parser("cache", help="the cache: folds the completions topic, answers routers' lookups "
                                          "(owns the embedded store)")
    cache.add_argument("--host", default="127.0.0.1")
    cache.add_argument("--port", type=int, default=None, help="default: the port of cache.url")
    cache.set_defaults(func=cmd_cache)

    purge = sub.add_parser("purge-cache", help="drop cached answers of a project (GATEWAY_URL, GATEWAY_ADMIN_KEY)")
    purge.add_argument("--project", required=True)
    purge.add_argument("--model")
    purge.set_defaults(func=cmd_purge_cache)

    sql = sub.add_parser("sql", help="run read-only SQL on the analytics store (needs GATEWAY_ADMIN_KEY)")
    sql.add_argument("query")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.set_defaults(func=cmd_sql)

    keys = sub.add_parser("keys", help="gateway keys: create, list, revoke (GATEWAY_URL, GATEWAY_ADMIN_KEY)")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("key_id", nargs="?", help="revoke: the key id")
    keys.add_argument("--project")
    keys.add_argument("--user")
    keys.add_argument("--team")
    keys.add_argument("--models", help="comma-separated models the key may use (default: all)")
    keys.add_argument("--expires-in", help="30d, 12h, 90m")
    keys.set_defaults(func=cmd_keys)

    for kind in ("teams", "limits", "budgets", "templates"):
        policy = sub.add_parser(kind, help=f"{kind}: set, list, remove (GATEWAY_URL, GATEWAY_ADMIN_KEY)")
        policy.add_argument("action", choices=["set", "list", "remove"])
        policy.add_argument("spec", nargs="?", help="set: the JSON the admin API takes; remove: the id or name")
        policy.set_defaults(func=cmd_policy)


if __name__ == "__main__":
    main()
