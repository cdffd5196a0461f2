/** The gateway's native API, as this client sends and receives it. */

export type Role = "system" | "developer" | "user" | "assistant" | "tool";

export interface TextPart { type: "text"; text: string }
export interface ImagePart { type: "image_url"; image_url: { url: string; detail?: "auto" | "low" | "high" } }

export interface ToolCall { id: string; type: "function"; function: { name: string; arguments: string } }

export interface Message {
  role: Role;
  content?: string | Array<TextPart | ImagePart> | null;
  name?: string;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
}

export interface Tool {
  type: "function";
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean };
}

export interface CacheOptions { mode?: "exact" | "semantic" | "off"; ttl_s?: number; threshold?: number }

export interface ChatParams {
  model: string;
  messages?: Message[];
  /** Models (or routes) tried in order when the first cannot answer. */
  fallback?: string[];
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  stop?: string | string[];
  seed?: number;
  user?: string;
  tools?: Tool[];
  tool_choice?: "auto" | "none" | "required" | { type: "function"; function: { name: string } };
  parallel_tool_calls?: boolean;
  response_format?: { type: "text" | "json_object" | "json_schema"; json_schema?: Record<string, unknown> };
  metadata?: Record<string, string>;
  /** A stored prompt template, its version, and its variables. */
  prompt_id?: string;
  prompt_version?: number;
  variables?: Record<string, string | number | boolean>;
  cache?: CacheOptions;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  cached_tokens: number;
  reasoning_tokens: number;
  cost_usd: number;
}

export interface ChatResponse {
  id: string;
  model: string;
  provider: string;
  content: string;
  tool_calls: ToolCall[];
  finish_reason: string;
  usage: Usage;
  latency_ms: number;
}

/** The native stream's events, in order: one start, deltas and tool calls, then end or error. */
export type StreamEvent =
  | { type: "start"; id: string; model: string; provider: string }
  | { type: "delta"; content: string }
  | { type: "tool_call"; index: number; id: string | null; name: string | null; arguments: string | null }
  | {
      type: "end"; id: string; model: string; provider: string; finish_reason: string; tool_calls: ToolCall[];
      usage: Usage; latency_ms: number; ttft_ms: number | null;
    }
  | { type: "error"; error: { message: string; type: string; code: string; param: string | null } };

export interface EmbeddingsParams {
  model: string;
  input: string | string[];
  dimensions?: number;
  user?: string;
}

export interface EmbeddingsResponse {
  object: "list";
  model: string;
  data: Array<{ object: "embedding"; index: number; embedding: number[] }>;
  usage: { prompt_tokens: number; total_tokens: number };
}

export interface Model { id: string; object: "model"; created: number; owned_by: string }
export interface ModelList { object: "list"; data: Model[] }
