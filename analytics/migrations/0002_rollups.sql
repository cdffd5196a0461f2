-- Requests, tokens and cost per project / user / model / provider / status, per minute and per day, with
-- latency and time-to-first-token quantile states: materialized on insert into `requests`.
CREATE TABLE IF NOT EXISTS usage_by_minute (
    minute DateTime('UTC'),
    project LowCardinality(String),
    user String,
    model LowCardinality(String),
    provider LowCardinality(String),
    status LowCardinality(String),
    requests SimpleAggregateFunction(sum, UInt64),
    failed_over SimpleAggregateFunction(sum, UInt64),
    prompt_tokens SimpleAggregateFunction(sum, UInt64),
    completion_tokens SimpleAggregateFunction(sum, UInt64),
    cached_tokens SimpleAggregateFunction(sum, UInt64),
    cost_usd SimpleAggregateFunction(sum, Float64),
    latency_ms AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64),
    ttft_ms AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64)
) ENGINE = AggregatingMergeTree
ORDER BY (minute, project, user, model, provider, status);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_minute_mv TO usage_by_minute AS
SELECT toStartOfMinute(recorded_at) AS minute, project, ifNull(user, '') AS user, model, provider, status,
       count() AS requests, countIf(attempts > 1) AS failed_over,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       sum(cached_tokens) AS cached_tokens, sum(cost_usd) AS cost_usd,
       quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency_ms,
       quantilesStateIf(0.5, 0.95, 0.99)(assumeNotNull(ttft_ms), isNotNull(ttft_ms)) AS ttft_ms
FROM requests
GROUP BY minute, project, user, model, provider, status;

CREATE TABLE IF NOT EXISTS usage_by_day (
    day Date,
    project LowCardinality(String),
    user String,
    model LowCardinality(String),
    provider LowCardinality(String),
    status LowCardinality(String),
    requests SimpleAggregateFunction(sum, UInt64),
    failed_over SimpleAggregateFunction(sum, UInt64),
    prompt_tokens SimpleAggregateFunction(sum, UInt64),
    completion_tokens SimpleAggregateFunction(sum, UInt64),
    cached_tokens SimpleAggregateFunction(sum, UInt64),
    cost_usd SimpleAggregateFunction(sum, Float64),
    latency_ms AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64),
    ttft_ms AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64)
) ENGINE = AggregatingMergeTree
ORDER BY (day, project, user, model, provider, status);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_day_mv TO usage_by_day AS
SELECT toDate(recorded_at) AS day, project, ifNull(user, '') AS user, model, provider, status,
       count() AS requests, countIf(attempts > 1) AS failed_over,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       sum(cached_tokens) AS cached_tokens, sum(cost_usd) AS cost_usd,
       quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency_ms,
       quantilesStateIf(0.5, 0.95, 0.99)(assumeNotNull(ttft_ms), isNotNull(ttft_ms)) AS ttft_ms
FROM requests
GROUP BY day, project, user, model, provider, status;

-- Provider calls by outcome and error kind, per minute: error rates and latency per provider and model.
CREATE TABLE IF NOT EXISTS attempts_by_minute (
    minute DateTime('UTC'),
    project LowCardinality(String),
    model LowCardinality(String),
    provider LowCardinality(String),
    outcome LowCardinality(String),
    error_kind String,
    calls SimpleAggregateFunction(sum, UInt64),
    duration_ms AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64)
) ENGINE = AggregatingMergeTree
ORDER BY (minute, project, model, provider, outcome, error_kind);

CREATE MATERIALIZED VIEW IF NOT EXISTS attempts_by_minute_mv TO attempts_by_minute AS
SELECT toStartOfMinute(started_at) AS minute, project, model, provider, outcome,
       ifNull(error_kind, '') AS error_kind, count() AS calls,
       quantilesState(0.5, 0.95, 0.99)(duration_ms) AS duration_ms
FROM attempts
GROUP BY minute, project, model, provider, outcome, error_kind;
