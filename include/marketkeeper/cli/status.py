"""marketkeeper status: the ops figures and SLO breaches (issue 13)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app`` (filled in by its issue)."""
