"""marketkeeper serve: the read-only market-data HTTP API for bots (issue 14)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app`` (filled in by its issue)."""
