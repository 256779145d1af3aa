"""Use case: seed the demo user and paper bot, roll the bot up over its seeded days, and report its latest row.

``marketkeeper demo-seed`` calls :func:`seed_demo`; running it again adds nothing (see
:mod:`marketkeeper.demo_seed`).
"""

from __future__ import annotations

from datetime import date
from typing import Any, NamedTuple

from marketkeeper.demo_seed import DemoSeed, seed_paper_bot
from marketkeeper.repositories import unit_of_work
from marketkeeper.rollups import RollupError
from marketkeeper.services.rollups import rollup_bot
from marketkeeper.store_set import StoreConfig, StoreSet

__all__ = ["DemoReport", "seed_demo"]


class DemoReport(NamedTuple):
    """What :func:`seed_demo` did (``seeded, latest = seed_demo(...)`` unpacks it).

    :ivar seeded: the demo bot and what was added to it.
    :ivar latest: every ``performance_metrics`` column of the bot's most recent day (which may lie after the
        seeded days when the bot was rolled up further since).
    """

    seeded: DemoSeed
    latest: dict[str, Any]


def seed_demo(config: StoreConfig, *, trades: int = 300, seed: int = 7, last_day: date | None = None) -> DemoReport:
    """Seed (or complete) the demo bot, roll it up over its seeded days, and read its latest performance row.

    :param config: where the stores are.
    :param trades: synthetic fills for a new demo bot (at least 2); a seeded bot keeps its own.
    :param seed: the random seed of a new demo bot.
    :param last_day: the last seeded day of a new demo bot (default: yesterday, UTC).
    :raises ValueError: ``trades`` is below 2.
    """
    with StoreSet.open(config) as stores:
        with unit_of_work(stores.ledger) as repos:
            seeded = seed_paper_bot(repos, n_trades=trades, seed=seed, last_day=last_day)
        rollup_bot(config, seeded.bot_id, seeded.first_day, seeded.last_day)
        with unit_of_work(stores.ledger) as repos:
            row = repos.performance.find_latest(seeded.bot_id)
            if row is None:
                raise RollupError(f"demo bot {seeded.bot_id} has no performance rows after its rollup")
            latest = {attr.key: getattr(row, attr.key) for attr in type(row).__mapper__.column_attrs}
    return DemoReport(seeded=seeded, latest=latest)
