"""The candle suite's definition: every check named once, every stored column checked."""

from __future__ import annotations

from marketkeeper.candles import CANDLE_COLUMNS, DERIVED_COLUMNS
from marketkeeper.quality.suite import CHECKS, INTEGRAL


def test_every_check_has_a_distinct_name() -> None:
    # Results are matched back to their check by name; a repeated name would hide one check's failures.
    names = [check.name for check in CHECKS]
    assert len(set(names)) == len(names)


def test_every_stored_column_is_checked() -> None:
    checked = {column for check in CHECKS for column in check.columns}
    # Derived tiers' counts are computed from candles that passed the gate, never received from a source.
    assert set(CANDLE_COLUMNS) - set(DERIVED_COLUMNS) <= checked
    assert INTEGRAL in checked


def test_importing_the_gate_does_not_import_great_expectations() -> None:
    import subprocess
    import sys

    code = "import sys, marketkeeper.quality; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
