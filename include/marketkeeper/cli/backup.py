"""marketkeeper backup run|list|verify|drill|restore|prune (issue 12)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app`` (filled in by its issue)."""
