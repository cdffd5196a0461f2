"""Stream processors: routing, provider calls, retries and failover; they emit reply, attempt and usage events."""
