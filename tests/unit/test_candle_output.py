"""``marketkeeper candles`` as a table: every value as stored, in aligned columns, a frame at a time."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from marketkeeper.candles import CANDLE_COLUMNS
from marketkeeper.cli.candle_output import write_table
from marketkeeper.stores.base import VALUE_COLUMNS, frame_from_columns

T0 = datetime(2024, 1, 1, tzinfo=UTC)
AWKWARD = [1.2345678901234567e-10, 0.1 + 0.2, 2.0**53 + 2, 7.0, 41_451.245678912]


def frame(start: int, n: int) -> pd.DataFrame:
    """A frame as a store's read yields it."""
    times = (np.arange(start, start + n, dtype=np.int64) * 60 + int(T0.timestamp())) * 1_000_000_000
    values = {name: np.roll(np.resize(AWKWARD, n), j) for j, name in enumerate(VALUE_COLUMNS)}
    quote = np.where(np.arange(n) % 2 == 0, np.nan, 3.5)
    counts = [None if i % 3 == 0 else i for i in range(n)]
    return frame_from_columns(times, values, quote_volume=quote, trade_count=counts)


def test_the_table_shows_every_stored_digit_aligned_with_a_header_on_the_first_frame_only() -> None:
    first, second = frame(0, 5), frame(5, 3)
    out = io.StringIO()

    write_table([first, second], out)

    lines = out.getvalue().splitlines()
    assert lines[0].split() == list(CANDLE_COLUMNS)
    assert len(lines) == 1 + 5 + 3  # one header, one line per candle
    assert len({len(line) for line in lines[:6]}) == 1  # the first frame's lines are aligned with its header
    stored = pd.concat([first, second], ignore_index=True)
    cells = [line.split() for line in lines[1:]]
    assert [c[0] for c in cells] == [t.isoformat() for t in stored["open_time"]]
    for j, name in enumerate(("open", "high", "low", "close", "volume"), start=1):
        assert [float(c[j]) for c in cells] == stored[name].tolist(), name  # exact, not six decimals
    assert [c[6] for c in cells[:2]] == ["NaN", "3.5"]
    assert [c[7] for c in cells[:3]] == ["<NA>", "1", "2"]


def test_an_empty_read_says_so() -> None:
    out = io.StringIO()
    write_table([], out)
    assert out.getvalue() == "no candles in that range\n"
