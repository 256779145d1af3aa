"""
### performance_rollups

Rolls every bot's performance up for the day that just closed: one `performance_metrics` row per bot and UTC
day (trade counts, win rate, P&L, fees, average and largest win/loss, profit factor, expectancy) with the
Sharpe, Sortino and Calmar ratios and the max drawdown of its equity curve, and the same figures to InfluxDB
(`performance` measurement) when `marketkeeper_influxdb_default` exists. One mapped task per bot.

* **Conventions**: crypto trades every day, so ratios are annualized with 365 periods; returns are daily,
  zero-return days included; drawdown is measured on equity, as a non-positive fraction. Risk figures cover a
  trailing window of `window_days` daily returns (90 by default). Trade figures cover the day's own trades.
* **Equity** comes from `balance_snapshots` of the bot's account (its user and `exchange`), in the bot's
  `config.quote_currency` or the settlement currency of its trades.
* **Schedule**: daily at 00:30 UTC on an interval timetable, after the midnight balance snapshot; the run rolls
  up the UTC day its data interval starts on.
* **Idempotent**: a day with no trades still gets a row, and re-running a day replaces its row.
* **Recompute history** (Trigger DAG w/ config): pick `bots` (ids or names; empty = every bot) and a
  `start_date`/`end_date` (inclusive). `marketkeeper rollup --bot ID --start DATE --end DATE` does the same.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, Param, task

from marketkeeper.airflow.dag_glue import marketkeeper_dag, selection_param, time_param


@task
def plan(**context: Any) -> list[str]:
    """The ids of the bots to roll up (an unknown bot fails the run at once, without retries)."""
    from marketkeeper.airflow.dag_glue import fail_fast
    from marketkeeper.airflow.rollups import plan_bots

    with fail_fast():
        return plan_bots(context["params"]["bots"])


@task(map_index_template="{{ map_label }}")
def rollup(bot_id: str, **context: Any) -> dict[str, Any]:
    """Roll one bot up over the run's day, or over the start_date..end_date params."""
    from marketkeeper.airflow.dag_glue import fail_fast, set_map_label
    from marketkeeper.airflow.rollups import days_for
    from marketkeeper.airflow.rollups import rollup as rollup_bot

    set_map_label(bot_id)
    with fail_fast():
        first, last = days_for(context)
    report = rollup_bot(bot_id, first, last, window_days=context["params"]["window_days"])
    set_map_label(f"{report['bot']} ({bot_id[:8]})")
    return report


@task
def summary(reports: list[dict[str, Any]]) -> int:
    """Log each bot's latest row; return how many bots were rolled up."""
    import logging

    log = logging.getLogger("airflow.task")
    count = 0
    for report in reports:
        latest = report["latest"]
        log.info(
            "%s %s..%s: %s trades; %s: pnl %s, sharpe %s, max drawdown %s", report["bot"], report["start"],
            report["end"], report["trades"], latest["metric_date"], latest["total_pnl"], latest["sharpe_ratio"],
            latest["max_drawdown"],
        )  # fmt: skip
        count += 1
    return count


@marketkeeper_dag(
    "performance_rollups",
    schedule=CronDataIntervalTimetable("30 0 * * *", timezone="UTC"),
    doc=__doc__,
    tags=["ledger", "performance"],
    timeout=timedelta(hours=2),
    retries=2,
    params={
        "bots": selection_param("Bots", "Bot ids or unique names, one per line; empty = every bot."),
        "start_date": time_param(
            "Start date (UTC, inclusive)", "With End date, replaces the run's day: recompute history.", date_only=True
        ),
        "end_date": time_param("End date (UTC, inclusive)", "Defaults to Start date.", date_only=True),
        "window_days": Param(
            90,
            type=["null", "integer"],
            minimum=1,
            title="Risk window (days)",
            description="Days of daily returns behind Sharpe, Sortino, Calmar and drawdown; empty = all history.",
        ),
    },
)
def performance_rollups() -> None:
    summary(rollup.expand(bot_id=plan()))


performance_rollups()
