"""Only reading SQL reaches the store."""

from __future__ import annotations

import pytest

from analytics.sql_guard import NotReadOnly, check_read_only


@pytest.mark.parametrize("sql", [
    "SELECT count() FROM requests FINAL;", "  with x as (select 1) select * from x", "SHOW TABLES",
    "DESCRIBE TABLE requests", "EXPLAIN SELECT 1", "(SELECT 1) UNION ALL (SELECT 2)",
    "-- spend\nSELECT 1", "/* a note */ SELECT 1",
])
def test_reading_statements_pass(sql: str) -> None:
    assert check_read_only(sql)


@pytest.mark.parametrize(("sql", "why"), [
    ("DROP TABLE requests", "not DROP"), ("insert into requests values ('x')", "not INSERT"),
    ("SET max_threads = 1", "not SET"), ("SELECT 1; DROP TABLE requests", "one statement"),
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "'file\\('"),
    ("SELECT 1 INTO OUTFILE '/tmp/x'", "INTO OUTFILE"), ("select * from url('http://x', CSV)", "'url\\('"),
    ("SELECT * FROM remote('10.0.0.1', system.one)", "'remote\\('"), ("", "empty"),
    ("-- SELECT\nDROP TABLE requests", "not DROP"), ("SELECT '--', * FROM file('x')", "'file\\('"),
])
def test_anything_else_is_refused_saying_why(sql: str, why: str) -> None:
    with pytest.raises(NotReadOnly, match=why):
        check_read_only(sql)
