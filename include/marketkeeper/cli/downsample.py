"""marketkeeper downsample, retention and ledger maintenance (issue 11)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app`` (filled in by its issue)."""
