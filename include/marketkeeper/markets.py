"""The markets to keep, as declared in ``include/config/markets.yaml`` (or an Airflow Variable): load and validate.

Each entry is one series at its base timeframe, with the tiers derived from it and how long each timeframe is
kept; a bad entry is reported by its index and field.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PositiveInt,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from marketkeeper.candles import SeriesKey
from marketkeeper.errors import ConfigurationError
from marketkeeper.sources import parse_source_spec
from marketkeeper.timeframes import TIMEFRAMES, Timeframe, TimeframeError

__all__ = [
    "DEFAULT_MARKETS_FILE",
    "DEFAULT_TIERS",
    "MarketConfigError",
    "MarketSpec",
    "TimeframeField",
    "load_markets",
]

log = logging.getLogger(__name__)

#: Where the project's markets are declared.
DEFAULT_MARKETS_FILE = Path(__file__).resolve().parents[1] / "config" / "markets.yaml"


#: The tiers a market derives when it declares none: those of these its base can make (all of them from 1m).
DEFAULT_TIERS: Final = tuple(Timeframe.parse(tf) for tf in ("5m", "15m", "1h", "4h", "1d", "1w", "1M"))


def _derivable(base: Timeframe, target: Timeframe) -> bool:
    from marketkeeper.tiers.resample import check_derivable

    try:
        check_derivable(base, target)
    except TimeframeError:
        return False
    return True


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
    #: The timeframes computed from the stored base series (never fetched); ``None``: :data:`DEFAULT_TIERS`
    #: that the base can make, less any another entry fetches; ``[]``: none.
    derived: tuple[TimeframeField, ...] | None = None
    #: Days each timeframe (the base or a tier) is kept; a timeframe not named is kept forever.
    retention_days: dict[str, PositiveInt] = Field(default_factory=dict)

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

    @model_validator(mode="after")
    def _tiers_and_retention(self) -> MarketSpec:
        base = self.base_timeframe
        for tf in self.derived or ():
            if not _derivable(base, tf):
                raise ValueError(
                    f"derived timeframe {tf} cannot be computed from base {base}: each {tf} bucket must be a "
                    f"whole number (more than one) of {base} candles"
                )
        if self.derived is not None and len(set(self.derived)) != len(self.derived):
            raise ValueError("derived lists a timeframe twice")
        kept = {base.value, *(tf.value for tf in self.tiers)}
        for name in self.retention_days:
            if name not in kept:
                raise ValueError(
                    f"retention_days names {name!r}, which this market neither fetches nor derives "
                    f"({', '.join(sorted(kept, key=TIMEFRAMES.index))})"
                )
        # A finer timeframe never outlives a coarser one: coarser tiers are recomputed from finer ones.
        ordered = [base, *sorted(self.tiers, key=lambda t: TIMEFRAMES.index(t.value))]
        days = [self.retention_days.get(tf.value) for tf in ordered]
        for (fine, fine_days), (coarse, coarse_days) in zip(
            zip(ordered, days, strict=True), list(zip(ordered, days, strict=True))[1:], strict=False
        ):
            if coarse_days is not None and (fine_days is None or fine_days > coarse_days):
                raise ValueError(
                    f"retention_days keeps {coarse} for {coarse_days} days but {fine} for "
                    f"{'ever' if fine_days is None else f'{fine_days} days'}: a coarser timeframe must be kept "
                    "at least as long as a finer one"
                )
        return self

    @property
    def tiers(self) -> tuple[Timeframe, ...]:
        """The derived timeframes, shortest first (see :attr:`derived`)."""
        if self.derived is None:
            return tuple(tf for tf in DEFAULT_TIERS if _derivable(self.base_timeframe, tf))
        return tuple(sorted(self.derived, key=lambda t: TIMEFRAMES.index(t.value)))

    def tier_key(self, timeframe: Timeframe | str) -> SeriesKey:
        """The series a derived tier is stored under (the market's exchange and symbol)."""
        return SeriesKey(self.exchange, self.symbol, Timeframe.parse(timeframe))

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
    specs = _resolve_tiers(specs, problems, [index for index, _ in seen.values()])
    if problems:
        raise MarketConfigError(f"{origin} has {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return specs


def _resolve_tiers(specs: list[MarketSpec], problems: list[str], indexes: list[int]) -> list[MarketSpec]:
    """A timeframe fetched by one entry and derived by another of the same market is an error when declared;
    the default tier set simply leaves such a timeframe out."""
    fetched: dict[tuple[str, str], set[Timeframe]] = {}
    for spec in specs:
        fetched.setdefault((spec.exchange, spec.symbol), set()).add(spec.base_timeframe)
    out = []
    for index, spec in zip(indexes, specs, strict=True):
        others = fetched[(spec.exchange, spec.symbol)] - {spec.base_timeframe}
        if spec.derived is None:
            if others & set(spec.tiers):
                spec = spec.model_copy(update={"derived": tuple(tf for tf in spec.tiers if tf not in others)})
        else:
            both = sorted((others & set(spec.derived)), key=lambda t: TIMEFRAMES.index(t.value))
            if both:
                problems.append(
                    f"markets[{index}].derived: {', '.join(map(str, both))} of {spec.exchange} {spec.symbol} "
                    "is also fetched by another entry; a timeframe is either fetched or derived"
                )
        out.append(spec)
    return out


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
