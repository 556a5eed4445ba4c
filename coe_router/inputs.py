"""Checks on a query before any work is spent on it: clear errors instead of garbage routed somewhere."""

from __future__ import annotations

from coe_router.defaults import MAX_QUERY_CHARS


class InvalidQueryError(ValueError):
    """A query the router refuses: empty, too long, or not text."""


def message_text(content: str | list) -> str:
    """A message's text: its text parts a line each (as vLLM joins them). LangChain's `.text` glues them, so
    "Translate this:" and "Bonjour" would be routed and answered as "Translate this:Bonjour"."""
    if isinstance(content, str):
        return content
    parts = (part if isinstance(part, str) else part.get("text") if part.get("type") == "text" else None
             for part in content)
    return "\n".join(part for part in parts if isinstance(part, str))


def check_query(query: object, max_chars: int = MAX_QUERY_CHARS) -> str:
    if isinstance(query, bytes):
        try:
            query = query.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidQueryError(f"query is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not isinstance(query, str):
        raise InvalidQueryError(f"query must be text, got {type(query).__name__}")
    if not query.strip():
        raise InvalidQueryError("query is empty")
    if len(query) > max_chars:
        raise InvalidQueryError(f"query has {len(query)} characters; the limit is {max_chars} (limits.max_query_chars)")
    if "\x00" in query:
        raise InvalidQueryError("query contains a NUL character")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidQueryError(f"query is not valid Unicode ({exc.reason} at character {exc.start})") from None
    return query
