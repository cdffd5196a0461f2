-- The request log: one row per request, from UsageRecorded (event_id = request_id). ReplacingMergeTree
-- keeps one row per id even if one were written twice; the sink also never inserts an id it holds.
CREATE TABLE IF NOT EXISTS requests (
    event_id String,
    request_id String,
    recorded_at DateTime64(3, 'UTC'),
    project LowCardinality(String),
    key_id LowCardinality(String),
    user Nullable(String),
    operation LowCardinality(String),
    model LowCardinality(String),
    provider LowCardinality(String),
    status LowCardinality(String),
    error_code Nullable(String),
    stream Bool,
    prompt_tokens UInt32,
    completion_tokens UInt32,
    cached_tokens UInt32,
    reasoning_tokens UInt32,
    cost_usd Float64,
    latency_ms Float64,
    ttft_ms Nullable(Float64),
    attempts UInt16
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(recorded_at)
ORDER BY (project, recorded_at, event_id);

-- Every provider call, from AttemptFinished.
CREATE TABLE IF NOT EXISTS attempts (
    attempt_id String,
    request_id String,
    project LowCardinality(String),
    attempt_no UInt16,
    started_at DateTime64(3, 'UTC'),
    model LowCardinality(String),
    provider LowCardinality(String),
    outcome LowCardinality(String),
    status Nullable(UInt16),
    error_kind Nullable(String),
    retryable Bool,
    duration_ms Float64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (project, started_at, attempt_id);
