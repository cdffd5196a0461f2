-- What the cache did for a request (hit, semantic-hit, miss, skipped; null: not asked) and what a hit saved.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS cache Nullable(String);
ALTER TABLE requests ADD COLUMN IF NOT EXISTS cache_similarity Nullable(Float64);
ALTER TABLE requests ADD COLUMN IF NOT EXISTS cost_saved_usd Float64 DEFAULT 0;
