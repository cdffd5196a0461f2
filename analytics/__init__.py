"""Analytics: ClickHouse tables and views folded from the usage and attempts topics, and what reads them."""
