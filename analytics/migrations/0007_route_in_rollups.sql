-- Requests, spend and latency per route (the virtual model that chose a request's target; '' when the client
-- named a model): the rollups gain `route` in their key and are rebuilt from the request log, so that what
-- came before this migration is grouped by its route too. Migrations run before the sink starts: nothing is
-- inserted into `requests` between the drop of a view and its creation.
DROP VIEW IF EXISTS usage_by_minute_mv;
ALTER TABLE usage_by_minute ADD COLUMN IF NOT EXISTS route LowCardinality(String),
    MODIFY ORDER BY (minute, project, user, model, provider, status, route);
TRUNCATE TABLE usage_by_minute;
INSERT INTO usage_by_minute (minute, project, user, model, provider, status, route, requests, failed_over,
                             prompt_tokens, completion_tokens, cached_tokens, cost_usd, latency_ms, ttft_ms,
                             cache_hits, cost_saved_usd)
SELECT toStartOfMinute(recorded_at) AS minute, project, ifNull(user, '') AS user, model, provider, status,
       ifNull(route, '') AS route,
       count() AS requests, countIf(attempts > 1) AS failed_over,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       sum(cached_tokens) AS cached_tokens, sum(cost_usd) AS cost_usd,
       quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency_ms,
       quantilesStateIf(0.5, 0.95, 0.99)(assumeNotNull(ttft_ms), isNotNull(ttft_ms)) AS ttft_ms,
       countIf(cache IN ('hit', 'semantic-hit')) AS cache_hits, sum(cost_saved_usd) AS cost_saved_usd
FROM requests FINAL
GROUP BY minute, project, user, model, provider, status, route;
CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_minute_mv TO usage_by_minute AS
SELECT toStartOfMinute(recorded_at) AS minute, project, ifNull(user, '') AS user, model, provider, status,
       ifNull(route, '') AS route,
       count() AS requests, countIf(attempts > 1) AS failed_over,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       sum(cached_tokens) AS cached_tokens, sum(cost_usd) AS cost_usd,
       quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency_ms,
       quantilesStateIf(0.5, 0.95, 0.99)(assumeNotNull(ttft_ms), isNotNull(ttft_ms)) AS ttft_ms,
       countIf(cache IN ('hit', 'semantic-hit')) AS cache_hits, sum(cost_saved_usd) AS cost_saved_usd
FROM requests
GROUP BY minute, project, user, model, provider, status, route;

DROP VIEW IF EXISTS usage_by_day_mv;
ALTER TABLE usage_by_day ADD COLUMN IF NOT EXISTS route LowCardinality(String),
    MODIFY ORDER BY (day, project, user, model, provider, status, route);
TRUNCATE TABLE usage_by_day;
INSERT INTO usage_by_day (day, project, user, model, provider, status, route, requests, failed_over,
                          prompt_tokens, completion_tokens, cached_tokens, cost_usd, latency_ms, ttft_ms,
                          cache_hits, cost_saved_usd)
SELECT toDate(recorded_at) AS day, project, ifNull(user, '') AS user, model, provider, status,
       ifNull(route, '') AS route,
       count() AS requests, countIf(attempts > 1) AS failed_over,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       sum(cached_tokens) AS cached_tokens, sum(cost_usd) AS cost_usd,
       quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency_ms,
       quantilesStateIf(0.5, 0.95, 0.99)(assumeNotNull(ttft_ms), isNotNull(ttft_ms)) AS ttft_ms,
       countIf(cache IN ('hit', 'semantic-hit')) AS cache_hits, sum(cost_saved_usd) AS cost_saved_usd
FROM requests FINAL
GROUP BY day, project, user, model, provider, status, route;
CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_day_mv TO usage_by_day AS
SELECT toDate(recorded_at) AS day, project, ifNull(user, '') AS user, model, provider, status,
       ifNull(route, '') AS route,
       count() AS requests, countIf(attempts > 1) AS failed_over,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       sum(cached_tokens) AS cached_tokens, sum(cost_usd) AS cost_usd,
       quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency_ms,
       quantilesStateIf(0.5, 0.95, 0.99)(assumeNotNull(ttft_ms), isNotNull(ttft_ms)) AS ttft_ms,
       countIf(cache IN ('hit', 'semantic-hit')) AS cache_hits, sum(cost_saved_usd) AS cost_saved_usd
FROM requests
GROUP BY day, project, user, model, provider, status, route;
