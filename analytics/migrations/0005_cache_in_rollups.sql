-- The rollups count cache hits and what they saved: the views are made again with the two new sums
-- (migrations run before the sink starts, so no insert falls between the drop and the create).
ALTER TABLE usage_by_minute ADD COLUMN IF NOT EXISTS cache_hits SimpleAggregateFunction(sum, UInt64) DEFAULT 0;
ALTER TABLE usage_by_minute ADD COLUMN IF NOT EXISTS cost_saved_usd SimpleAggregateFunction(sum, Float64) DEFAULT 0;
DROP VIEW IF EXISTS usage_by_minute_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_minute_mv TO usage_by_minute AS
SELECT toStartOfMinute(recorded_at) AS minute, project, ifNull(user, '') AS user, model, provider, status,
       count() AS requests, countIf(attempts > 1) AS failed_over,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       sum(cached_tokens) AS cached_tokens, sum(cost_usd) AS cost_usd,
       quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency_ms,
       quantilesStateIf(0.5, 0.95, 0.99)(assumeNotNull(ttft_ms), isNotNull(ttft_ms)) AS ttft_ms,
       countIf(cache IN ('hit', 'semantic-hit')) AS cache_hits, sum(cost_saved_usd) AS cost_saved_usd
FROM requests
GROUP BY minute, project, user, model, provider, status;

ALTER TABLE usage_by_day ADD COLUMN IF NOT EXISTS cache_hits SimpleAggregateFunction(sum, UInt64) DEFAULT 0;
ALTER TABLE usage_by_day ADD COLUMN IF NOT EXISTS cost_saved_usd SimpleAggregateFunction(sum, Float64) DEFAULT 0;
DROP VIEW IF EXISTS usage_by_day_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_day_mv TO usage_by_day AS
SELECT toDate(recorded_at) AS day, project, ifNull(user, '') AS user, model, provider, status,
       count() AS requests, countIf(attempts > 1) AS failed_over,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       sum(cached_tokens) AS cached_tokens, sum(cost_usd) AS cost_usd,
       quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency_ms,
       quantilesStateIf(0.5, 0.95, 0.99)(assumeNotNull(ttft_ms), isNotNull(ttft_ms)) AS ttft_ms,
       countIf(cache IN ('hit', 'semantic-hit')) AS cache_hits, sum(cost_saved_usd) AS cost_saved_usd
FROM requests
GROUP BY day, project, user, model, provider, status;
