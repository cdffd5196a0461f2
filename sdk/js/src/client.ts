import {
  AbortError, APIConnectionError, APITimeoutError, GatewayError, errorFor, type ErrorBody,
} from "./errors.js";
import { readSSE } from "./sse.js";
import type {
  ChatParams, ChatResponse, EmbeddingsParams, EmbeddingsResponse, ModelList, StreamEvent,
} from "./types.js";

export interface AIGatewayOptions {
  /** A gateway key; default: the INFRARIX_KEY environment variable. */
  apiKey?: string;
  /** Default: INFRARIX_BASE_URL, else http://127.0.0.1:8080. */
  baseURL?: string;
  /** Milliseconds to wait for an answer (for a stream: for its first event). Default 60,000. */
  timeout?: number;
  /** Tries after the first on a network error, a 429 or a 5xx, with backoff and `retry-after`. Default 2. */
  maxRetries?: number;
  /** Another fetch (a test double, a proxy agent). Default: the platform's. */
  fetch?: typeof fetch;
}

export interface RequestOptions {
  /** Cancels the call; for a stream, also stops the gateway's call to the provider. */
  signal?: AbortSignal;
  timeout?: number;
  maxRetries?: number;
  headers?: Record<string, string>;
}

declare const process: { env: Record<string, string | undefined> } | undefined;

function env(name: string): string | undefined {
  return typeof process !== "undefined" ? process.env?.[name] : undefined;
}

const RETRYABLE = (status: number) => status === 408 || status === 429 || status >= 500;

export class AIGateway {
  readonly baseURL: string;
  readonly timeout: number;
  readonly maxRetries: number;
  readonly #apiKey: string;
  readonly #fetch: typeof fetch;

  constructor(options: AIGatewayOptions = {}) {
    const apiKey = options.apiKey ?? env("INFRARIX_KEY");
    if (!apiKey) {
      throw new GatewayError("no API key: pass { apiKey } or set INFRARIX_KEY");
    }
    this.#apiKey = apiKey;
    this.baseURL = (options.baseURL ?? env("INFRARIX_BASE_URL") ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
    this.timeout = options.timeout ?? 60_000;
    this.maxRetries = options.maxRetries ?? 2;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** One chat answer, with failover across `fallback`; `response.usage.cost_usd` is what it cost. */
  async chat(params: ChatParams, options: RequestOptions = {}): Promise<ChatResponse> {
    const response = await this.#request("POST", "/v1/gateway/chat", { ...params, stream: false }, options);
    return (await response.json()) as ChatResponse;
  }

  /** The answer as it is made: start, delta and tool_call events, then end (or error). Breaking out of
   *  the loop, or aborting the signal, closes the connection and the gateway cancels the provider call. */
  chatStream(params: ChatParams, options: RequestOptions = {}): ChatStream {
    return new ChatStream((signal) =>
      this.#request("POST", "/v1/gateway/chat", { ...params, stream: true }, { ...options, signal }), options.signal);
  }

  async embeddings(params: EmbeddingsParams, options: RequestOptions = {}): Promise<EmbeddingsResponse> {
    const response = await this.#request("POST", "/v1/embeddings", params, options);
    return (await response.json()) as EmbeddingsResponse;
  }

  /** The models (and routes) this key may use. */
  async models(options: RequestOptions = {}): Promise<ModelList> {
    const response = await this.#request("GET", "/v1/models", undefined, options);
    return (await response.json()) as ModelList;
  }

  async #request(method: string, path: string, body: unknown, options: RequestOptions): Promise<Response> {
    const retries = options.maxRetries ?? this.maxRetries;
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await this.#once(method, path, body, options);
      } catch (error) {
        if (error instanceof APIConnectionError && !(error instanceof APITimeoutError) && attempt < retries) {
          await sleep(backoff(attempt, null), options.signal);
          continue;
        }
        throw error;
      }
      if (response.ok) return response;
      const requestId = response.headers.get("x-request-id");
      const errorBody = (await response.json().catch(() => undefined)) as ErrorBody | undefined;
      if (RETRYABLE(response.status) && attempt < retries) {
        await sleep(backoff(attempt, response.headers.get("retry-after")), options.signal);
        continue;
      }
      throw errorFor(response.status, errorBody, requestId);
    }
  }

  async #once(method: string, path: string, body: unknown, options: RequestOptions): Promise<Response> {
    const timeout = options.timeout ?? this.timeout;
    const controller = new AbortController();  // the timeout, until the answer's head arrives
    const timer = setTimeout(() => controller.abort(new APITimeoutError(`no answer within ${timeout} ms`)), timeout);
    // The caller's signal stays on the whole exchange: aborting it mid-stream closes the connection.
    const signal = options.signal ? AbortSignal.any([controller.signal, options.signal]) : controller.signal;
    try {
      return await this.#fetch(this.baseURL + path, {
        method,
        headers: {
          authorization: `Bearer ${this.#apiKey}`,
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
          ...options.headers,
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        signal,
      });
    } catch (error) {
      if (options.signal?.aborted) throw new AbortError("aborted by the caller");
      const reason = controller.signal.reason;
      if (reason instanceof GatewayError) throw reason;
      throw new APIConnectionError(`cannot reach the gateway at ${this.baseURL}: ${(error as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A streamed answer: iterate it for its events; `abort()` (or the caller's signal) stops it. */
export class ChatStream implements AsyncIterable<StreamEvent> {
  readonly #open: (signal: AbortSignal) => Promise<Response>;
  readonly #controller = new AbortController();

  constructor(open: (signal: AbortSignal) => Promise<Response>, signal?: AbortSignal) {
    this.#open = open;
    signal?.addEventListener("abort", () => this.abort(), { once: true });
  }

  abort(): void {
    this.#controller.abort(new AbortError("aborted by the caller"));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamEvent> {
    const response = await this.#open(this.#controller.signal);
    if (!response.body) throw new APIConnectionError("the gateway sent no stream");
    try {
      for await (const message of readSSE(response.body)) {
        const data = JSON.parse(message.data);
        const event = { type: message.event ?? "delta", ...data } as StreamEvent;
        yield event;
        if (event.type === "end" || event.type === "error") return;
      }
    } catch (error) {
      if (this.#controller.signal.aborted) throw new AbortError("aborted by the caller");
      throw new APIConnectionError(`the stream broke: ${(error as Error).message}`);
    } finally {
      this.#controller.abort();  // breaking out early closes the connection: the gateway cancels upstream
    }
  }
}

function backoff(attempt: number, retryAfter: string | null): number {
  const seconds = retryAfter !== null ? Number(retryAfter) : NaN;
  if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds * 1000, 60_000);
  return Math.min(500 * 2 ** attempt, 8_000) * (0.5 + Math.random() / 2);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortError("aborted by the caller"));
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new AbortError("aborted by the caller"));
    }, { once: true });
  });
}
