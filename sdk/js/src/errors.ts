/** Errors carry what the gateway said: its OpenAI-shaped error body, the HTTP status and the request id. */

export interface ErrorBody { error: { message: string; type: string; code: string | null; param: string | null } }

export class GatewayError extends Error {
  readonly status: number | undefined;
  readonly code: string | null;
  readonly type: string | null;
  readonly param: string | null;
  readonly requestId: string | null;
  readonly body: ErrorBody | undefined;

  constructor(message: string, status?: number, body?: ErrorBody, requestId?: string | null) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.body = body;
    this.code = body?.error?.code ?? null;
    this.type = body?.error?.type ?? null;
    this.param = body?.error?.param ?? null;
    this.requestId = requestId ?? null;
  }
}

export class BadRequestError extends GatewayError {}
export class AuthenticationError extends GatewayError {}
export class PermissionDeniedError extends GatewayError {}
export class NotFoundError extends GatewayError {}
export class RateLimitError extends GatewayError {}
export class InternalServerError extends GatewayError {}
/** The gateway could not be reached (or the connection broke): no status. */
export class APIConnectionError extends GatewayError {}
/** No answer within the client's `timeout`. */
export class APITimeoutError extends APIConnectionError {}
/** The caller's AbortSignal fired. */
export class AbortError extends GatewayError {}

export function errorFor(status: number, body: ErrorBody | undefined, requestId: string | null): GatewayError {
  const message = body?.error?.message ?? `HTTP ${status}`;
  const kind =
    status === 400 || status === 413 || status === 422 ? BadRequestError
    : status === 401 ? AuthenticationError
    : status === 403 ? PermissionDeniedError
    : status === 404 ? NotFoundError
    : status === 429 ? RateLimitError
    : status >= 500 ? InternalServerError
    : GatewayError;
  return new kind(message, status, body, requestId);
}
