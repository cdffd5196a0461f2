"""Read-only SQL for `gateway sql` and `POST /v1/analytics/sql`. A ClickHouse server enforces it itself
(`readonly=1` on the query); the embedded chDB keeps a query's settings in its one session (measured: a
query with readonly=1 leaves every later insert refused), so the statement is checked here for both: one
statement, a reading one, and none of the table functions or clauses that reach files, hosts or
programs."""

from __future__ import annotations

import re

READING = ("select", "with", "show", "describe", "desc", "explain", "exists")
_ESCAPES = re.compile(
    r"\binto\s+outfile\b|\b(file|url|s3|s3cluster|hdfs|remote|remotesecure|mysql|postgresql|mongodb|jdbc|odbc|"
    r"azureblobstorage|gcs|executable|cluster|clusterallreplicas|deltalake|iceberg|hudi|redis|sqlite|python|"
    r"urlcluster|filecluster|input)\s*\(",
    re.IGNORECASE,
)


_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


class NotReadOnly(ValueError):
    pass


def check_read_only(sql: str) -> str:
    """The statement, without a trailing semicolon, if it only reads the store; else NotReadOnly."""
    statement = sql.strip().rstrip(";").strip()
    if not statement:
        raise NotReadOnly("the query is empty")
    if ";" in statement:
        raise NotReadOnly("one statement at a time")
    code = _COMMENTS.sub(" ", statement).strip()
    if not code:
        raise NotReadOnly("the query is only comments")
    first = code.split(None, 1)[0].lower().lstrip("(")
    if first not in READING:
        raise NotReadOnly(f"only reading statements ({', '.join(s.upper() for s in READING)}) run here, "
                          f"not {first.upper()}: the store is read-only to SQL")
    if match := _ESCAPES.search(statement):  # on the text as written: a comment cannot hide a string's end
        raise NotReadOnly(f"'{match.group(0).strip()}' reaches outside the store; it is not allowed here")
    return statement
