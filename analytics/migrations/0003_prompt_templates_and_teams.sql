-- Which prompt template (and version) made a request's messages: compare versions by cost and latency.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS prompt_id Nullable(String);
ALTER TABLE requests ADD COLUMN IF NOT EXISTS prompt_version Nullable(UInt32);
-- The team of the key that sent it (budgets and spend per team).
ALTER TABLE requests ADD COLUMN IF NOT EXISTS team Nullable(String);
