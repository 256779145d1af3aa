"""``marketkeeper rollup`` and ``marketkeeper demo-seed``: the bots' performance rows and the demo paper bot."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from marketkeeper.cli.common import fail, store_config, user_errors


def _parse_day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not a date (YYYY-MM-DD)")


def _print_rollups(rows: list[dict[str, object]]) -> None:
    def num(value: object, spec: str) -> str:
        return "-" if value is None else format(float(value), spec)  # type: ignore[arg-type]

    typer.echo(
        f"{'date':<10} {'trades':>6} {'wins':>5} {'losses':>6} {'win%':>6} {'net pnl':>12} {'equity':>12} "
        f"{'sharpe':>7} {'sortino':>7} {'calmar':>7} {'max dd':>7}"
    )
    for row in rows:
        typer.echo(
            f"{row['metric_date']!s:<10} {row['total_trades']!s:>6} {row['winning_trades']!s:>5} "
            f"{row['losing_trades']!s:>6} {num(row['win_rate'], '.1%'):>6} {num(row['total_pnl'], ',.2f'):>12} "
            f"{num(row['equity'], ',.2f'):>12} {num(row['sharpe_ratio'], '.2f'):>7} "
            f"{num(row['sortino_ratio'], '.2f'):>7} {num(row['calmar_ratio'], '.2f'):>7} "
            f"{num(row['max_drawdown'], '.2%'):>7}"
        )


def rollup(
    bot: Annotated[str, typer.Option("--bot", help="Bot id, or its name when unique.")],
    start: Annotated[str, typer.Option("--start", help="First day, UTC (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--end", help="Last day, UTC, included (YYYY-MM-DD).")],
    window_days: Annotated[
        int, typer.Option(help="Days of returns behind Sharpe/Sortino/Calmar/drawdown; 0 = all history.", min=0)
    ] = 90,
) -> None:
    """Roll a bot's performance up for every day from START to END into the ledger (and InfluxDB), as the DAG does.

    Idempotent: re-running a day replaces its row. Prints one line per day.
    """
    from marketkeeper.services.rollups import rollup_bot

    first, last = _parse_day(start, "--start"), _parse_day(end, "--end")
    with user_errors():
        report = rollup_bot(store_config(), bot, first, last, window_days=window_days or None)
    typer.echo(
        f"bot {report.bot_name} ({report.bot_id}), {len(report.days)} days, risk window {window_days or 'all'} days"
    )
    _print_rollups([d.row() for d in report.days])


def demo_seed(
    trades: Annotated[int, typer.Option("--trades", help="Synthetic fills for a new demo bot.", min=2)] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Random seed for a new demo bot.")] = 7,
) -> None:
    """Seed one paper bot (user `demo`, bot `demo-paper`) with synthetic trades and hourly balance snapshots,
    roll it up, and print its latest performance row. Running it again adds nothing."""
    from marketkeeper.services.demo import seed_demo

    with user_errors():
        seeded, row = seed_demo(store_config(), trades=trades, seed=seed)
    typer.echo(
        f"demo bot {seeded.bot_id}: {seeded.trades_total} trades ({seeded.trades_added} new), "
        f"{seeded.snapshots} hourly snapshots, {seeded.first_day}..{seeded.last_day}"
    )
    typer.echo("latest performance row:")
    _print_rollups([row])
    figures = ("profit_factor", "expectancy", "avg_win", "avg_loss", "largest_win", "largest_loss", "total_fees")
    typer.echo("  ".join(f"{name}={'-' if row[name] is None else format(float(row[name]), '.4g')}" for name in figures))


def register(app: typer.Typer) -> None:
    app.command()(rollup)
    app.command("demo-seed")(demo_seed)
