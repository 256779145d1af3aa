"""The InfluxDB store's answers as canonical frames: chunked rows parsed by pandas' C CSV reader, small answers
from their JSON values (numpy and pandas are imported here, not by :mod:`marketkeeper.stores.influxdb`)."""

from __future__ import annotations

import io
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from marketkeeper.influxdb import Series
from marketkeeper.influxdb.chunked import Chunk
from marketkeeper.series import CANDLE_COLUMNS, DERIVED_COLUMNS, QUOTE_VOLUME, TRADE_COUNT, VALUE_COLUMNS
from marketkeeper.stores.frames import frame_from_columns

__all__ = ["FIELDS", "chunk_frame", "chunk_times", "series_frame"]

#: The fields a candle read asks for, in frame order.
FIELDS: Final = CANDLE_COLUMNS[1:]
_DTYPES: Final[dict[str, Any]] = {"time": np.int64, **dict.fromkeys(VALUE_COLUMNS, np.float64)}
_DTYPES.update({QUOTE_VOLUME: np.float64, TRADE_COUNT: "Int64", **dict.fromkeys(DERIVED_COLUMNS, "Int64")})


def series_frame(pages: list[Series]) -> pd.DataFrame:
    columns: dict[str, list[Any]] = {"time": [], **{name: [] for name in FIELDS}}
    for page in pages:
        index = {name: i for i, name in enumerate(page.columns)}
        rows = page.values
        for name, values in columns.items():
            at = index.get(name)
            values.extend([None] * len(rows) if at is None else [row[at] for row in rows])
    quote_volume = np.array([np.nan if v is None else v for v in columns[QUOTE_VOLUME]], dtype=np.float64)
    return frame_from_columns(
        np.array(columns["time"], dtype=np.int64),
        {name: np.array(columns[name], dtype=np.float64) for name in VALUE_COLUMNS},
        quote_volume=quote_volume,
        trade_count=columns[TRADE_COUNT],
        derived={name: columns[name] for name in DERIVED_COLUMNS},
    )


def _parse(chunk: Chunk, **options: Any) -> pd.DataFrame:
    # The C parser rounds every decimal to the nearest double (exact, like json.loads); "null" is no value.
    return pd.read_csv(
        io.BytesIO(chunk.csv),
        header=None,
        names=chunk.columns,
        na_values=["null"],
        keep_default_na=False,
        engine="c",
        **options,
    )


def chunk_frame(chunk: Chunk) -> pd.DataFrame:
    table = _parse(chunk, dtype={name: _DTYPES.get(name, object) for name in chunk.columns})
    missing = pd.Series(np.full(len(table), np.nan))
    return frame_from_columns(
        table["time"].to_numpy(dtype=np.int64),
        {name: table.get(name, missing).to_numpy(dtype=np.float64) for name in VALUE_COLUMNS},
        quote_volume=table.get(QUOTE_VOLUME, missing).to_numpy(dtype=np.float64),
        trade_count=table[TRADE_COUNT].array if TRADE_COUNT in table else None,
        derived={name: table[name].array for name in DERIVED_COLUMNS if name in table},
    )


def chunk_times(chunk: Chunk) -> npt.NDArray[np.int64]:
    return np.asarray(_parse(chunk, usecols=[0], dtype={"time": np.int64})["time"].to_numpy(), dtype=np.int64)
