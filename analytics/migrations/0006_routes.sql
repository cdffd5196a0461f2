-- The route (virtual model) that chose a request's target, and how: group spend and latency by route.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS route Nullable(String);
ALTER TABLE requests ADD COLUMN IF NOT EXISTS strategy Nullable(String);
