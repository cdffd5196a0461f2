export { AIGateway, ChatStream, type AIGatewayOptions, type RequestOptions } from "./client.js";
export {
  GatewayError, BadRequestError, AuthenticationError, PermissionDeniedError, NotFoundError, RateLimitError,
  InternalServerError, APIConnectionError, APITimeoutError, AbortError, type ErrorBody,
} from "./errors.js";
export type * from "./types.js";
