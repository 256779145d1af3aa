r"""Text the ledger can store whatever a source sent: PostgreSQL's TEXT and JSONB refuse NUL (``\x00``), and
no UTF-8 column can hold a lone surrogate (``'\ud800'``, or ``'\udcff'`` from a file name that was not UTF-8).

The escaping is applied only to text holding such a character, so ordinary text is stored exactly as
received. Escaped text doubles every backslash and writes NUL as the four characters ``\x00`` and a lone
surrogate as the six characters ``\udXXX`` (lower-case hex), which makes it reversible with
:func:`unescape_text`. Whether a value was escaped must be recorded next to it (``raw_row`` says
``"escaped": true``); text of ordinary sources never contains ``\x00`` or ``\udXXX`` anyway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["escape_text", "needs_escape", "storable_json", "storable_text", "truncated_text", "unescape_text"]

_REFUSED: Final = re.compile("[\x00\ud800-\udfff]")
_ESCAPED: Final = re.compile("[\\\\\x00\ud800-\udfff]")
_UNESCAPE: Final = re.compile(r"\\(\\|x00|ud[89a-f][0-9a-f]{2})")


def needs_escape(text: str) -> bool:
    """Whether ``text`` holds a character PostgreSQL refuses."""
    return _REFUSED.search(text) is not None


def _escape_char(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if char == "\x00":
        return "\\x00"
    return f"\\u{ord(char):04x}"


def escape_text(text: str) -> str:
    """``text`` escaped (backslashes doubled, NUL and lone surrogates as escapes), whether it needs it or not."""
    return _ESCAPED.sub(lambda match: _escape_char(match.group()), text)


def unescape_text(text: str) -> str:
    """The text :func:`escape_text` was given."""

    def one(match: re.Match[str]) -> str:
        body = match.group(1)
        if body == "\\":
            return "\\"
        if body == "x00":
            return "\x00"
        return chr(int(body[1:], 16))

    return _UNESCAPE.sub(one, text)


def storable_text(text: str) -> str:
    """``text`` as is when PostgreSQL takes it, else escaped (see the module docstring)."""
    return escape_text(text) if needs_escape(text) else text


def truncated_text(text: str, limit: int) -> tuple[str, bool, bool]:
    """At most ``limit`` characters of ``text`` that PostgreSQL takes, never cutting an escape in two.

    :returns: the text to store, whether it is escaped, whether characters were left out.
    """
    if not needs_escape(text):
        return text[:limit], False, len(text) > limit
    pieces: list[str] = []
    size = 0
    # Escaping never shortens, so no more than ``limit`` characters of the original can fit.
    for char in text[:limit]:
        piece = _escape_char(char) if _ESCAPED.match(char) else char
        if size + len(piece) > limit:
            break
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces), True, len(pieces) < len(text)


def storable_json(value: Any) -> Any:
    """``value`` (JSON types only) with every string, keys included, made :func:`storable_text`."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, Mapping):
        return {storable_text(str(k)): storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    return value
