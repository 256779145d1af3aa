"""Text the ledger refuses, made storable: escaped only when needed, reversibly, and capped without cutting
an escape in two."""

from __future__ import annotations

import pytest

from marketkeeper.quality.escape import (
    escape_text,
    needs_escape,
    storable_json,
    storable_text,
    truncated_text,
    unescape_text,
)
from marketkeeper.quality.store import RAW_LIMIT, raw_row


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("1704067200000,1,2", "1704067200000,1,2"),
        ("C:\\data\\x.csv", "C:\\data\\x.csv"),  # nothing refused: stored as received, backslashes too
        ("a\x00b", "a\\x00b"),
        ("a\ud800b", "a\\ud800b"),
        ("\\x00\x00", "\\\\x00\\x00"),  # a literal "\x00" stays distinguishable from an escaped NUL
        ("file-\udcff.csv", "file-\\udcff.csv"),
        ("€ 😀", "€ 😀"),
    ],
)
def test_only_refused_text_is_escaped(text: str, stored: str) -> None:
    assert storable_text(text) == stored
    assert needs_escape(text) == (stored != text)
    assert not needs_escape(stored)
    stored.encode("utf-8")  # no lone surrogate is left


@pytest.mark.parametrize("text", ["", "plain", "a\x00b", "\ud800\udfff\ud83d", "\\\\x00\\ud800\x00\\", "\\u00zz"])
def test_escaping_is_reversible(text: str) -> None:
    assert unescape_text(escape_text(text)) == text


def test_truncation_never_cuts_an_escape() -> None:
    stored, escaped, truncated = truncated_text("ab" + "\x00" * 10, 9)

    assert (stored, escaped, truncated) == ("ab\\x00", True, True)
    assert truncated_text("abc", 3) == ("abc", False, False)
    assert truncated_text("abcd", 3) == ("abc", False, True)


def test_json_strings_and_keys_are_made_storable() -> None:
    value = {"a\x00": ["x\ud800", 1, None, {"k": "v"}], "n": 1.5}

    assert storable_json(value) == {"a\\x00": ["x\\ud800", 1, None, {"k": "v"}], "n": 1.5}


def test_a_rejected_row_is_capped_with_its_full_length_and_marked_escaped() -> None:
    long_text = "\x00" + "x" * 100_000

    row = raw_row({"raw": long_text, "file": "klines-\udcff.csv", "line": 3})

    assert row["raw"] == "\\x00" + "x" * (RAW_LIMIT - 4)
    assert row["raw_length"] == 100_001
    assert row["truncated"] is True
    assert row["escaped"] is True
    assert row["file"] == "klines-\\udcff.csv"
    assert row["line"] == 3


def test_an_ordinary_rejected_row_is_stored_as_received() -> None:
    assert raw_row({"raw": "1,2,3", "file": None, "line": 9}) == {"raw": "1,2,3", "line": 9}
