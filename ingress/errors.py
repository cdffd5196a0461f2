"""The gateway's errors, each mapped to its HTTP status and OpenAI's error body in one place:
`{"error": {"message", "type", "code", "param"}}`."""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response


class GatewayError(Exception):
    def __init__(self, status: int, type_: str, code: str, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers


def invalid_request(message: str, code: str = "invalid_request", param: str | None = None) -> GatewayError:
    return GatewayError(400, "invalid_request_error", code, message, param)


def error_body(type_: str, code: str, message: str, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "code": code, "param": param}})


def error_response(error: GatewayError) -> Response:
    return Response(error_body(error.type, error.code, error.message, error.param), error.status,
                    headers=error.headers, media_type="application/json")


_STATUS_TYPES = {401: "authentication_error", 404: "invalid_request_error", 405: "invalid_request_error"}


def install(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway(_: Request, exc: GatewayError) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        type_ = _STATUS_TYPES.get(exc.status_code, "invalid_request_error" if exc.status_code < 500 else "api_error")
        code = "not_found" if exc.status_code == 404 else f"http_{exc.status_code}"
        return error_response(GatewayError(exc.status_code, type_, code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        return error_response(invalid_request(str(exc.errors()[:1])))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        return error_response(GatewayError(500, "api_error", "internal_error", "internal gateway error"))
