"""The markets to keep, as declared in ``include/config/markets.yaml`` (or an Airflow Variable): load and validate.

Each entry is one series at its base timeframe; a bad entry is reported by its index and field.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from marketkeeper.candles import SeriesKey
from marketkeeper.errors import ConfigurationError
from marketkeeper.sources import parse_source_spec
from marketkeeper.timeframes import TIMEFRAMES, Timeframe

__all__ = ["DEFAULT_MARKETS_FILE", "MarketConfigError", "MarketSpec", "TimeframeField", "load_markets"]

log = logging.getLogger(__name__)

#: Where the project's markets are declared.
DEFAULT_MARKETS_FILE = Path(__file__).resolve().parents[1] / "config" / "markets.yaml"


class MarketConfigError(ConfigurationError):
    """The markets declaration is malformed; the message names each bad entry by index and field."""


class _Loader(yaml.SafeLoader):
    """Safe YAML that leaves dates as text: pydantic then reports a bad date by entry and field."""


_Loader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def _timeframe(value: object) -> Timeframe:
    if isinstance(value, Timeframe | str):
        return Timeframe.parse(value)
    raise ValueError(f"a timeframe is a string such as '1m', got {value!r}")


#: A pydantic field holding a :class:`Timeframe`, read from and written as its spelling.
TimeframeField = Annotated[
    Timeframe,
    PlainValidator(_timeframe),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "enum": list(TIMEFRAMES)}),
]


class MarketSpec(BaseModel):
    """One market to keep complete; fields mirror the ``markets`` table."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    #: The ccxt exchange id, e.g. ``binance``.
    exchange: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")
    #: The ccxt unified symbol, e.g. ``BTC/USDT`` (32 characters at most: the ``markets`` column's size).
    symbol: str = Field(min_length=3, max_length=32)
    base_timeframe: TimeframeField = Field(
        default=Timeframe.parse("1m"), validation_alias=AliasChoices("base_timeframe", "timeframe")
    )
    #: The first UTC day to keep; ``None`` keeps everything the source has.
    first_date: date | None = Field(default=None, validation_alias=AliasChoices("first_date", "start"))
    #: ``ccxt``, ``ccxt:EXCHANGE``, ``files:DIR``, ``synthetic`` or ``synthetic:SEED``.
    source: str = "ccxt"
    active: bool = True

    @field_validator("exchange", mode="before")
    @classmethod
    def _lowercase_exchange(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("symbol")
    @classmethod
    def _unified_symbol(cls, value: str) -> str:
        if not re.fullmatch(r"[^\s/:]+/[^\s/:]+(:[^\s/]+)?", value):
            raise ValueError("a symbol is ccxt's unified BASE/QUOTE (or BASE/QUOTE:SETTLE), e.g. BTC/USDT")
        return value

    @field_validator("first_date", mode="before")
    @classmethod
    def _no_datetime(cls, value: object) -> object:
        if isinstance(value, datetime):
            raise ValueError("first_date is a day (YYYY-MM-DD), not a timestamp")
        return value

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        try:
            parse_source_spec(value)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from exc  # pydantic reports ValueErrors per field
        return value

    @property
    def key(self) -> SeriesKey:
        """The series this market's base timeframe is stored under."""
        return SeriesKey(self.exchange, self.symbol, self.base_timeframe)

    @property
    def first_time(self) -> datetime | None:
        """00:00 UTC of ``first_date``."""
        if self.first_date is None:
            return None
        return datetime(self.first_date.year, self.first_date.month, self.first_date.day, tzinfo=UTC)


def load_markets(path_or_text: str | Path = DEFAULT_MARKETS_FILE) -> list[MarketSpec]:
    """Read and validate a markets declaration: a YAML (or JSON) ``markets:`` list, or a bare list.

    Identical repeated entries are kept once; two different entries for the same exchange, symbol and
    timeframe are an error.

    :param path_or_text: a ``Path``, a string path ending in ``.yaml``/``.yml``/``.json``, or the text itself.
    :raises MarketConfigError: listing every bad entry as ``markets[i].field: problem``.
    """
    origin, text = _read(path_or_text)
    try:
        document = yaml.load(text, Loader=_Loader)  # noqa: S506 (_Loader is a SafeLoader)
    except yaml.YAMLError as exc:
        raise MarketConfigError(f"{origin} is not valid YAML: {exc}") from exc
    entries = document.get("markets") if isinstance(document, dict) else document
    if document is None or entries is None:
        return []
    if not isinstance(entries, list):
        raise MarketConfigError(f"{origin}: expected a 'markets:' list, got {type(entries).__name__}")

    problems: list[str] = []
    specs: list[MarketSpec] = []
    seen: dict[tuple[str, str, str], tuple[int, MarketSpec]] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(f"markets[{index}]: expected a mapping of fields, got {entry!r}")
            continue
        try:
            spec = MarketSpec.model_validate(entry)
        except ValidationError as exc:
            problems.extend(_describe(index, error) for error in exc.errors())
            continue
        series = (spec.exchange, spec.symbol, spec.base_timeframe.value)
        if series in seen:
            first_index, first = seen[series]
            if first == spec:
                log.warning("%s: markets[%d] repeats markets[%d]; keeping one", origin, index, first_index)
            else:
                problems.append(
                    f"markets[{index}]: duplicate of markets[{first_index}] "
                    f"({spec.exchange} {spec.symbol} {spec.base_timeframe}) with different settings"
                )
            continue
        seen[series] = (index, spec)
        specs.append(spec)
    if problems:
        raise MarketConfigError(f"{origin} has {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return specs


def _read(path_or_text: str | Path) -> tuple[str, str]:
    if isinstance(path_or_text, str) and not (
        "\n" not in path_or_text and path_or_text.strip().endswith((".yaml", ".yml", ".json"))
    ):
        return "markets text", path_or_text
    path = Path(path_or_text)
    try:
        return str(path), path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MarketConfigError(f"cannot read markets file {path}: {exc}") from exc


def _describe(index: int, error: Any) -> str:
    field = ".".join(str(part) for part in error["loc"])
    where = f"markets[{index}].{field}" if field else f"markets[{index}]"
    return f"{where}: {error['msg']} (got {error.get('input')!r})"
