"""The read-only guard: a query is one SELECT (or WITH ... SELECT) statement, or it is refused
before it reaches the database.

The guard reads the query as the database would, conservatively: comments and string
literals are removed (what is in them is never run), and any construct whose extent the
dialects disagree on is refused rather than guessed (a backslash in a literal, PostgreSQL's
dollar quotes, MySQL's executable ``/*! */`` comments, nested comments). What remains must
start with SELECT or WITH, hold no second statement and no data-modifying keyword. It is not
a sandbox (a function may still write): the connector also opens every session read-only
where the database allows, and a read-only database user is the real protection.

Example::

    >>> read_only_query("SELECT * FROM sales -- all of it", "postgresql")
    'SELECT * FROM sales'
    >>> read_only_query("DELETE FROM sales", "postgresql")
    Traceback (most recent call last):
    ...
    ValueError: the query starts with DELETE: only a SELECT or WITH query is allowed
"""

from __future__ import annotations

import re

from raysight.connectors.database.urls import Dialect

#: keywords that change data, schema, sessions or files; refused anywhere outside literals
#: (PostgreSQL runs INSERT/UPDATE/DELETE inside WITH; SELECT ... INTO creates a table or file)
FORBIDDEN = frozenset("""
    INSERT UPDATE DELETE MERGE UPSERT DROP CREATE ALTER TRUNCATE RENAME GRANT REVOKE COPY
    CALL EXEC EXECUTE DO LOCK UNLOCK VACUUM REINDEX ATTACH DETACH PRAGMA INTO OUTFILE
    DUMPFILE PREPARE DEALLOCATE SET
""".split())
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_DOLLAR_QUOTE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def read_only_query(sql: str, dialect: Dialect) -> str:
    """The query without comments and a trailing ``;`` (to embed as a subquery), when it is
    one read-only statement; ValueError saying why not, otherwise."""
    code, kept = _lex(sql, dialect)
    if _DOLLAR_QUOTE.search(code) and dialect == "postgresql":
        raise ValueError("dollar-quoted strings ($$...$$) are not supported in a query")
    body = code.rstrip()
    if body.endswith(";"):
        body = body[:-1]
    if ";" in body:
        raise ValueError("the query holds more than one statement (`;`): give one SELECT")
    words = [w.upper() for w in _WORD.findall(body)]
    if not words:
        raise ValueError("the query is empty")
    if words[0] not in ("SELECT", "WITH"):
        raise ValueError(f"the query starts with {words[0]}: only a SELECT or WITH query is "
                         "allowed")
    bad = sorted(set(words) & FORBIDDEN)
    if bad:
        raise ValueError(f"the query contains {', '.join(bad)}: only reading queries are "
                         "allowed (quote a column of that name as an identifier)")
    return kept.rstrip().removesuffix(";").rstrip()


def _lex(sql: str, dialect: Dialect) -> tuple[str, str]:
    """(code, kept): ``code`` is the query with literals and quoted identifiers emptied and
    comments blanked, for the checks; ``kept`` is the query without its comments."""
    closers = {"'": "'", '"': '"', "`": "`"}
    if dialect == "sqlite":
        closers["["] = "]"
    code: list[str] = []
    kept: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        two = sql[i:i + 2]
        if two == "--" and (i + 2 == n or sql[i + 2].isspace()) or ch == "#" and dialect == "mysql":
            end = sql.find("\n", i)
            i = n if end < 0 else end
            code.append(" ")
            kept.append(" ")
        elif two == "/*":
            if sql[i + 2:i + 3] == "!" or sql[i + 2:i + 4] == "M!":
                raise ValueError("executable comments (/*! ... */) are not allowed in a query")
            end = sql.find("*/", i + 2)
            if end < 0:
                raise ValueError("the query has an unterminated /* comment")
            if "/*" in sql[i + 2:end]:
                raise ValueError("nested /* comments */ are not supported in a query")
            i = end + 2
            code.append(" ")
            kept.append(" ")
        elif ch in closers:
            close = closers[ch]
            j = i + 1
            while True:
                end = sql.find(close, j)
                if end < 0:
                    raise ValueError(f"the query has an unterminated {ch}...{close} literal")
                if close != "]" and sql[end + 1:end + 2] == close:  # a doubled quote
                    j = end + 2
                    continue
                break
            if "\\" in sql[i + 1:end]:
                raise ValueError("backslashes in quoted literals are not supported in a query "
                                 "(the dialects disagree on where such a literal ends)")
            code.append(ch + close)
            kept.append(sql[i:end + 1])
            i = end + 1
        else:
            code.append(ch)
            kept.append(ch)
            i += 1
    return "".join(code), "".join(kept)
