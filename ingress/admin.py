"""The admin API (admin keys only): gateway keys and teams, rate limits and budgets, prompt templates,
routes; created, listed, updated and revoked or removed. A key's secret is in the answer to its creation and
nowhere else."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.responses import Response

from infra.config import Budget, Limit, RouteSpec
from infra.log_view import LogView
from ingress import openapi
from ingress.bodies import as_client_error
from ingress.bridge import KafkaBridge
from ingress.errors import GatewayError, invalid_request
from ingress.keyring import KeyRing, _now_ms
from ingress.teams import TeamDirectory
from ingress.templates import TemplateStore
from processors import route_changes
from processors.limits import Policies
from processors.policies import publish
from processors.routes import InvalidRoutes, RouteBook, validated


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyCreate(_Strict):
    project: str = Field(min_length=1, max_length=200)
    team: str | None = Field(None, min_length=1)
    user: str | None = Field(None, min_length=1)
    allowed_models: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    expires_at: datetime | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.timestamp() * 1000 <= _now_ms():
            raise ValueError("must be in the future")
        return value


class TeamPut(_Strict):
    team: str = Field(pattern=r"^[a-zA-Z0-9_.-]{1,100}$")
    project: str = Field(min_length=1, max_length=200)
    metadata: dict[str, str] = Field(default_factory=dict)


class KeyUpdate(_Strict):
    allowed_models: list[Annotated[str, Field(min_length=1)]] | None = None
    expires_at: datetime | None = None
    metadata: dict[str, str] | None = None


class TemplateMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str = Field(min_length=1)


class TemplateCreate(_Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9_.-]{1,100}$")
    messages: list[TemplateMessage] = Field(min_length=1)
    published: bool = True


class TemplatePublish(_Strict):
    published: bool


def _template(record: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in record.items() if k != "messages_json"}
    return {**shown, "messages": orjson.loads(record["messages_json"])}


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "digest"}


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type="application/json")


def _parse(model: type[_Strict], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise as_client_error(exc) from None


def _ms(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value is not None else None


ERRORS: dict[int | str, dict[str, Any]] = {status: openapi.error_response() for status in (400, 401, 403, 404)}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def install(app: FastAPI, keyring: KeyRing, teams: TeamDirectory, templates: TemplateStore,
            policies: LogView[Policies], bridge: KafkaBridge, routes: LogView[RouteBook]) -> None:
    _install_keys(app, keyring, teams)
    _install_teams(app, keyring, teams)
    _install_routes(app, keyring, routes)

    @app.delete("/v1/admin/cache", responses=ERRORS)
    async def purge_cache(request: Request, project: str, model: str | None = None) -> Response:
        """Drop the cached answers of a project (and one model) recorded until now, on every cache."""
        keyring.admin(request.headers.get("authorization"))
        purge = {"project": project, "model": model, "purged_at_ms": _now_ms()}
        await bridge.record(bridge.settings.topics.completions, project, "CachePurged", purge)
        return _json({**purge, "purged": True})
    _install_policies(app, keyring, policies)

    @app.post("/v1/admin/templates", status_code=201, responses=ERRORS, openapi_extra=_body(TemplateCreate))
    async def create_template(request: Request) -> Response:
        """A new version of a prompt template (the first makes the template); published unless told not."""
        keyring.admin(request.headers.get("authorization"))
        body: TemplateCreate = _parse(TemplateCreate, await request.body())
        record = await templates.add(body.name, [m.model_dump() for m in body.messages], body.published)
        return _json(_template(record), 201)

    @app.get("/v1/admin/templates", responses=ERRORS)
    async def list_templates(request: Request) -> Response:
        keyring.admin(request.headers.get("authorization"))
        return _json({"data": [_template(t) for t in templates.list()]})

    @app.patch("/v1/admin/templates/{name}/versions/{version}", responses=ERRORS,
               openapi_extra=_body(TemplatePublish))
    async def publish_template(name: str, version: int, request: Request) -> Response:
        """Publish (the latest published version answers requests that name no version) or withdraw."""
        keyring.admin(request.headers.get("authorization"))
        body: TemplatePublish = _parse(TemplatePublish, await request.body())
        return _json(_template(await templates.publish(name, version, body.published)))


def _install_policies(app: FastAPI, keyring: KeyRing, view: LogView[Policies]) -> None:
    """Rate limits and budgets, in the configuration's shape; every gatekeeper and ingress applies a change
    within a second. Configured ones are listed too (and may be replaced or removed here)."""

    @app.post("/v1/admin/limits", status_code=201, responses=ERRORS, openapi_extra=_body(Limit))
    async def set_limit(request: Request) -> Response:
        keyring.admin(request.headers.get("authorization"))
        limit: Limit = _parse(Limit, await request.body())
        if limit.id is None:
            raise invalid_request("a limit set here needs an 'id'", "missing_required_parameter", "id")
        await publish(view, "limit", limit.id, limit.model_dump(exclude_none=True))
        return _json(limit.model_dump(), 201)

    @app.post("/v1/admin/budgets", status_code=201, responses=ERRORS, openapi_extra=_body(Budget))
    async def set_budget(request: Request) -> Response:
        keyring.admin(request.headers.get("authorization"))
        budget: Budget = _parse(Budget, await request.body())
        await publish(view, "budget", budget.name, budget.model_dump(exclude_none=True))
        return _json(budget.model_dump(), 201)

    @app.get("/v1/admin/limits", responses=ERRORS)
    async def list_limits(request: Request) -> Response:
        keyring.admin(request.headers.get("authorization"))
        return _json({"data": [{**limit.model_dump(), "id": key} for key, limit in view.state.limits.items()]})

    @app.get("/v1/admin/budgets", responses=ERRORS)
    async def list_budgets(request: Request) -> Response:
        keyring.admin(request.headers.get("authorization"))
        return _json({"data": [budget.model_dump() for budget in view.state.budgets.values()]})

    @app.delete("/v1/admin/{kind}/{policy_id}", responses=ERRORS)
    async def remove_policy(kind: Literal["limits", "budgets"], policy_id: str, request: Request) -> Response:
        keyring.admin(request.headers.get("authorization"))
        held = view.state.limits if kind == "limits" else view.state.budgets
        if policy_id not in held:
            raise GatewayError(404, "invalid_request_error", "policy_not_found", f"no {kind[:-1]} {policy_id!r}",
                               "id")
        await publish(view, kind[:-1], policy_id, None)
        return _json({"id": policy_id, "removed": True})


def _live_keys(keyring: KeyRing, team: str) -> list[str]:
    now = _now_ms()
    return [r["key_id"] for r in keyring.list(None) if r["team"] == team and r["revoked_at_ms"] is None
            and (r["expires_at_ms"] is None or r["expires_at_ms"] > now)]


def _install_teams(app: FastAPI, keyring: KeyRing, teams: TeamDirectory) -> None:
    @app.post("/v1/admin/teams", status_code=201, responses={**ERRORS, 409: openapi.error_response()},
              openapi_extra=_body(TeamPut))
    async def put_team(request: Request) -> Response:
        """Create a team in a project, or change its metadata."""
        keyring.admin(request.headers.get("authorization"))
        body: TeamPut = _parse(TeamPut, await request.body())
        return _json(await teams.put(body.team, body.project, body.metadata), 201)

    @app.get("/v1/admin/teams", responses=ERRORS)
    async def list_teams(request: Request, project: str | None = None) -> Response:
        keyring.admin(request.headers.get("authorization"))
        return _json({"data": teams.list(project)})

    @app.get("/v1/admin/teams/{team}", responses=ERRORS)
    async def get_team(team: str, request: Request) -> Response:
        """A team and its live keys."""
        keyring.admin(request.headers.get("authorization"))
        return _json({**teams.find(team), "keys": _live_keys(keyring, team)})

    @app.delete("/v1/admin/teams/{team}", responses={**ERRORS, 409: openapi.error_response()})
    async def remove_team(team: str, request: Request) -> Response:
        """Remove a team whose keys are all revoked or expired (a 409 names the live ones)."""
        keyring.admin(request.headers.get("authorization"))
        return _json(await teams.remove(team, _live_keys(keyring, team)))


def _install_keys(app: FastAPI, keyring: KeyRing, teams: TeamDirectory) -> None:
    @app.post("/v1/admin/keys", status_code=201, responses=ERRORS, openapi_extra=_body(KeyCreate))
    async def create_key(request: Request) -> Response:
        """A new gateway key for a project (optionally a team of it, and a user), limited to some models,
        expiring."""
        keyring.admin(request.headers.get("authorization"))
        body: KeyCreate = _parse(KeyCreate, await request.body())
        if body.team is not None and teams.find(body.team)["project"] != body.project:
            raise invalid_request(f"team {body.team!r} is not in project {body.project!r}", "invalid_value", "team")
        secret, record = await keyring.create(body.project, body.team, body.user, body.allowed_models,
                                              _ms(body.expires_at), body.metadata)
        return _json({**_public(record), "key": secret}, 201)

    @app.get("/v1/admin/keys", responses=ERRORS)
    async def list_keys(request: Request, project: str | None = None) -> Response:
        keyring.admin(request.headers.get("authorization"))
        return _json({"data": [_public(r) for r in keyring.list(project)]})

    @app.get("/v1/admin/keys/{key_id}", responses=ERRORS)
    async def get_key(key_id: str, request: Request) -> Response:
        keyring.admin(request.headers.get("authorization"))
        return _json(_public(keyring.find(key_id)))

    @app.patch("/v1/admin/keys/{key_id}", responses=ERRORS, openapi_extra=_body(KeyUpdate))
    async def update_key(key_id: str, request: Request) -> Response:
        keyring.admin(request.headers.get("authorization"))
        body: KeyUpdate = _parse(KeyUpdate, await request.body())
        fields = body.model_dump(exclude_unset=True)
        if "expires_at" in fields:
            fields["expires_at_ms"] = _ms(fields.pop("expires_at"))
        return _json(_public(await keyring.change(key_id, **fields)))

    @app.delete("/v1/admin/keys/{key_id}", responses=ERRORS)
    async def revoke_key(key_id: str, request: Request) -> Response:
        """Revoke: every instance refuses the key within a second; the record stays, for audit."""
        keyring.admin(request.headers.get("authorization"))
        return _json(_public(await keyring.change(key_id, revoked_at_ms=_now_ms())))


def _route(name: str, book: RouteBook) -> dict[str, Any]:
    source = "api" if name in book.from_api else "file"
    return {"name": name, "source": source, **book.routes[name].model_dump(mode="json", exclude_none=True)}


def _route_refused(name: str, refused: InvalidRoutes) -> GatewayError:
    """A 400 naming the route's field (`targets.0.provider`), or its name, or the route as a whole (a rules
    route without a default)."""
    field: str | None = refused.where.removeprefix(f"routes.{name}.")
    if field == refused.where:
        field = None
    elif field == "[key]":
        field = "name"
    return invalid_request(f"{field}: {refused.why}" if field else refused.why, "invalid_value", field)


def _install_routes(app: FastAPI, keyring: KeyRing, view: LogView[RouteBook]) -> None:
    """Routes (virtual models) in the routes file's shape; every router, gatekeeper and ingress takes a change
    within a second. A route set here takes the place of the routes file's route of the same name until it
    is removed here."""
    book = view.state

    @app.put("/v1/admin/routes/{name}", responses=ERRORS, openapi_extra=_body(RouteSpec))
    async def put_route(name: str, request: Request) -> Response:
        keyring.admin(request.headers.get("authorization"))
        try:
            raw = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise invalid_request("the body is a route as JSON: {\"targets\": [...], ...}", "invalid_json",
                                  None) from None
        try:
            spec = validated({"routes": {name: raw}})[name]
        except InvalidRoutes as exc:
            raise _route_refused(name, exc) from None
        await route_changes.publish(view, name, spec.model_dump(mode="json", exclude_unset=True))
        return _json(_route(name, book))

    @app.get("/v1/admin/routes", responses=ERRORS)
    async def list_routes(request: Request) -> Response:
        keyring.admin(request.headers.get("authorization"))
        return _json({"data": [_route(name, book) for name in sorted(book.routes)]})

    @app.get("/v1/admin/routes/{name}", responses=ERRORS)
    async def get_route(name: str, request: Request) -> Response:
        keyring.admin(request.headers.get("authorization"))
        if name not in book.routes:
            raise GatewayError(404, "invalid_request_error", "route_not_found", f"no route {name!r}", "name")
        return _json(_route(name, book))

    @app.delete("/v1/admin/routes/{name}", responses=ERRORS)
    async def remove_route(name: str, request: Request) -> Response:
        keyring.admin(request.headers.get("authorization"))
        if name not in book.from_api:
            where = " (it comes from the routes file: edit the file to remove it)" if name in book.routes else ""
            raise GatewayError(404, "invalid_request_error", "route_not_found",
                               f"no route {name!r} set through the API{where}", "name")
        await route_changes.publish(view, name, None)
        return _json({"name": name, "removed": True, "source_now": "file" if name in book.routes else None})
