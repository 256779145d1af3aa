"""The one place that turns names and values into InfluxDB line protocol, escaped so they read back unchanged.

The escaping follows the InfluxDB docs: measurements escape comma and space; tag keys, tag values and field
keys escape comma, equals sign and space; string field values escape ``"`` and ``\\``. A few names cannot be
carried by line protocol at all on InfluxDB 1.x, whose parser has no escape for a backslash in a name; those
raise :class:`ValueError` naming the value instead of being stored changed (checked against a real 1.6 server
in ``tests/integration/test_influxdb_client.py``):

* a newline anywhere in a name (a raw one ends the line; ``\\n`` is stored as backslash + ``n``);
* a backslash at the end of a name, or right before ``,``, ``=``, space or ``"`` (the server reads the pair
  as an escape, so ``a\\`` swallows the separator after it and ``a\\"b`` comes back as ``a"b``);
* a measurement starting with ``#`` (the line is a comment) and a measurement or field key starting with a
  tab (the server strips it);
* ``time`` as a tag key or field key (the server drops the point).

Every other character, quotes, commas, equals signs, spaces, other backslashes and any unicode included,
round-trips. String field *values* have none of these limits: they carry newlines and trailing backslashes.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy.typing as npt

FieldValue = float | int | bool | str | Decimal

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# The 1.x parser reserves the two extreme int64 values for its own sentinels.
_TIME_MIN = _INT64_MIN + 2
_TIME_MAX = _INT64_MAX - 1

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
# After a backslash the 1.x parser treats these as escaped (or, at the end, the separator that follows).
_AFTER_BACKSLASH_FORBIDDEN = frozenset(',= "')


def _check_name(kind: str, name: str, *, strips_leading_tab: bool = False) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{kind} must be a str, got {type(name).__name__}: {name!r}")
    if not name:
        raise ValueError(f"{kind} must not be empty")
    if "\n" in name:
        raise ValueError(f"{kind} {name!r} contains a newline, which line protocol cannot carry in a name")
    if strips_leading_tab and name[0] == "\t":
        raise ValueError(f"{kind} {name!r} starts with a tab, which InfluxDB strips")
    index = name.find("\\")
    while index != -1:
        following = name[index + 1 : index + 2]
        if following == "" or following in _AFTER_BACKSLASH_FORBIDDEN:
            where = "at the end" if following == "" else f"before {following!r}"
            raise ValueError(
                f"{kind} {name!r} has a backslash {where}, which InfluxDB 1.x reads as an escape "
                "and would store changed"
            )
        index = name.find("\\", index + 1)


def escape_measurement(name: str) -> str:
    """Escape a measurement name: comma and space get a backslash.

    :raises ValueError: the name is empty or cannot round-trip (see the module docstring).
    """
    _check_name("measurement", name, strips_leading_tab=True)
    if name[0] == "#":
        raise ValueError(f"measurement {name!r} starts with '#', which makes the line a comment")
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_tag(key_or_value: str) -> str:
    """Escape a tag key or tag value: comma, equals sign and space get a backslash.

    :raises ValueError: the text is empty or cannot round-trip (see the module docstring).
    """
    _check_name("tag key or value", key_or_value)
    return key_or_value.translate(_TAG_ESCAPES)


def escape_field_key(key: str) -> str:
    """Escape a field key: comma, equals sign and space get a backslash.

    :raises ValueError: the key is empty, ``time`` or cannot round-trip (see the module docstring).
    """
    _check_name("field key", key, strips_leading_tab=True)
    if key == "time":
        raise ValueError("field key 'time' is reserved by InfluxDB")
    return key.translate(_TAG_ESCAPES)


def _format_float(value: float, field: str | None) -> str:
    if not math.isfinite(value):
        raise ValueError(f"field {field!r} is {value!r}; InfluxDB stores only finite floats")
    # orjson's shortest round-trip text, the same as float_texts writes for a column (so a point and a
    # candle line agree byte for byte); float() first: numpy scalars subclass float. Imported here: a CSV
    # export imports this package and writes no line.
    import orjson

    return orjson.dumps(float(value)).decode()


def float_texts(values: npt.NDArray[Any]) -> list[str]:
    """The text :func:`format_field_value` writes for each value of a float64 array, many at a time: orjson's
    shortest round-trip text of a double (``0.1``, ``-0.0``, ``7.0``, ``1.5e-5``'s ``0.000015``, ``1e+16``), from
    one ``orjson.dumps`` of the array, about five times faster than formatting a value at a time. Values must be
    finite (JSON has no NaN): the callers pass checked candle columns.
    """
    import numpy as np
    import orjson

    text = orjson.dumps(np.ascontiguousarray(values, dtype=np.float64), option=orjson.OPT_SERIALIZE_NUMPY)
    return text[1:-1].decode().split(",") if len(values) else []


def format_field_value(value: FieldValue, *, field: str | None = None) -> str:
    """Format one field value: floats at full precision, ints as ``123i``, bools as ``true``/``false``,
    strings double-quoted with ``\\`` and ``"`` escaped, ``Decimal`` as the nearest float.

    :param value: the value to format.
    :param field: the field's key, named in error messages.
    :raises ValueError: NaN or infinity, or an int outside int64.
    :raises TypeError: a value of another type.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.translate(_STRING_ESCAPES) + '"'
    if isinstance(value, float):
        return _format_float(value, field)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"field {field!r} is {value!r}; InfluxDB stores only finite floats")
        return _format_float(float(value), field)
    if isinstance(value, numbers.Integral):
        number = int(value)
        if not _INT64_MIN <= number <= _INT64_MAX:
            raise ValueError(f"field {field!r} is {number}, outside InfluxDB's int64 range")
        return f"{number}i"
    if isinstance(value, numbers.Real):
        return _format_float(float(value), field)
    raise TypeError(f"field {field!r} has unsupported type {type(value).__name__}: {value!r}")


def _format_time(time_ns: int | None) -> str:
    if time_ns is None:
        return ""
    if isinstance(time_ns, bool) or not isinstance(time_ns, numbers.Integral):
        raise TypeError(f"time must be an int (nanoseconds since the epoch), got {type(time_ns).__name__}")
    number = int(time_ns)
    if not _TIME_MIN <= number <= _TIME_MAX:
        raise ValueError(f"time {number} is outside the range InfluxDB accepts")
    return f" {number}"


def _escape_tag_key(key: str) -> str:
    if key == "time":
        raise ValueError("tag key 'time' is reserved by InfluxDB")
    return escape_tag(key)


def format_line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue | None],
    time_ns: int | None = None,
) -> str:
    """Format one point as a line of line protocol (without the trailing newline).

    Tags are sorted by key, as InfluxDB recommends for write speed; tags whose value is empty or ``None`` are
    left out (InfluxDB has no empty tag values) and so are fields whose value is ``None``.

    :param measurement: the measurement name.
    :param tags: tag key to tag value.
    :param fields: field key to value; at least one must be non-``None``.
    :param time_ns: the timestamp in the write's precision (nanoseconds by default); ``None`` lets the
        server stamp the point.
    :raises ValueError: no fields, a value InfluxDB cannot store, or a name that cannot round-trip.
    """
    parts = [escape_measurement(measurement)]
    escaped_tags = sorted((_escape_tag_key(k), escape_tag(v)) for k, v in tags.items() if v)
    for key, value in escaped_tags:
        parts.append(f",{key}={value}")
    field_text = ",".join(
        f"{escape_field_key(k)}={format_field_value(v, field=k)}" for k, v in fields.items() if v is not None
    )
    if not field_text:
        raise ValueError(f"a point of measurement {measurement!r} needs at least one field")
    parts.append(" ")
    parts.append(field_text)
    parts.append(_format_time(time_ns))
    return "".join(parts)


def _escaped_column(values: Iterable[str | None]) -> list[str]:
    # Tag values repeat (a handful of symbols over a million candles), so escape each distinct one once.
    cache: dict[str | None, str] = {None: "", "": ""}
    out = []
    for value in values:
        text = cache.get(value)
        if text is None:
            text = cache[value] = escape_tag(value)  # type: ignore[arg-type]
        out.append(text)
    return out


def _formatted_column(key: str, values: Iterable[FieldValue | None]) -> list[str | None]:
    escaped = escape_field_key(key) + "="
    out: list[str | None] = []
    for value in values:
        if value is None:
            out.append(None)
        elif type(value) is float:
            out.append(escaped + _format_float(value, key))
        else:
            out.append(escaped + format_field_value(value, field=key))
    return out


def format_lines(
    measurement: str,
    *,
    fields: Mapping[str, Sequence[FieldValue | None]],
    tags: Mapping[str, Sequence[str | None]] | None = None,
    times_ns: Sequence[int] | None = None,
    constant_tags: Mapping[str, str] | None = None,
) -> list[str]:
    """Format many points of one measurement from columns, the fast path for DataFrame writers.

    Each mapping value is a column (a list, tuple, numpy array or pandas Series): row ``i`` of the result is
    built from element ``i`` of every column. The output equals calling :func:`format_line` per row.

    :param measurement: the measurement of every point.
    :param fields: field key to column of values; ``None`` in a column leaves the field out of that row.
    :param tags: tag key to column of tag values; ``None`` or ``""`` leaves the tag out of that row.
    :param times_ns: the column of timestamps, or ``None`` to let the server stamp the points.
    :param constant_tags: tags every point carries.
    :raises ValueError: columns of different lengths, a row without fields, or a value :func:`format_line`
        rejects.
    """
    tags = tags or {}
    constant_tags = constant_tags or {}
    overlap = set(tags) & set(constant_tags)
    if overlap:
        raise ValueError(f"tags {sorted(overlap)} are given both as columns and as constants")
    if not fields:
        raise ValueError(f"points of measurement {measurement!r} need at least one field")
    lengths = {len(column) for column in (*fields.values(), *tags.values())}
    if times_ns is not None:
        lengths.add(len(times_ns))
    if len(lengths) != 1:
        raise ValueError(f"columns have different lengths: {sorted(lengths)}")
    (length,) = lengths

    # Sort the tag keys once; per-row tag columns and constant tags interleave in key order.
    tag_columns: list[list[str]] = []
    for key in sorted(set(tags) | set(constant_tags), key=_escape_tag_key):
        prefix = f",{_escape_tag_key(key)}="
        if key in constant_tags:
            value = constant_tags[key]
            tag_columns.append([prefix + escape_tag(value) if value else ""] * length)
        else:
            tag_columns.append([prefix + text if text else "" for text in _escaped_column(tags[key])])
    field_columns = [_formatted_column(key, column) for key, column in fields.items()]
    times = [_format_time(t) for t in times_ns] if times_ns is not None else [""] * length

    head = escape_measurement(measurement)
    keys = [head + "".join(parts) for parts in zip(*tag_columns, strict=True)] if tag_columns else [head] * length
    if any(None in column for column in field_columns):
        field_texts = []
        for index, row in enumerate(zip(*field_columns, strict=True)):
            text = ",".join(part for part in row if part is not None)
            if not text:
                raise ValueError(f"row {index} of measurement {measurement!r} has no non-None field")
            field_texts.append(text)
    else:
        field_texts = list(map(",".join, zip(*field_columns, strict=True)))
    return [key + " " + text + time_text for key, text, time_text in zip(keys, field_texts, times, strict=True)]
