"""``arpo doctor``: which Python sandbox tiers work on this machine, and why the others do not."""
from __future__ import annotations

import json
import time
from typing import Any

import typer


def diagnose(tiers: tuple[str, ...] | None = None, run: bool = True) -> list[dict[str, Any]]:
    """For each tier: available or not (with the reason); when available and ``run``, start a session,
    run a cell and fork it, with timings. Never raises."""
    from arpo_env.envs.python.config import TIERS, SandboxConfig
    from arpo_env.envs.python.session import Tree
    from arpo_env.envs.python.tiers import get_tier

    rows = []
    for name in tiers or TIERS:
        row: dict[str, Any] = {"tier": name}
        try:
            tier = get_tier(name)
            config = SandboxConfig(sandbox=name)
            ok, why = tier.available(config)
            row.update(available=ok, reason=why, fork=tier.fork_method)
            if ok and run:
                t0 = time.perf_counter()
                tree = Tree(tier, config)
                session = tree.spawn()
                row["start_s"] = round(time.perf_counter() - t0, 3)
                try:
                    res = session.execute("import os\nprint(6 * 7, os.getuid())")
                    t1 = time.perf_counter()
                    child = session.fork()
                    row["fork_ms"] = round((time.perf_counter() - t1) * 1e3, 2)
                    child.close()
                    row["works"] = res.error is None and res.output.startswith("42")
                    row["uid_inside"] = int(res.output.split()[1]) if row["works"] else None
                    if not row["works"]:
                        row["reason"] = f"a test cell failed: {res.error}: {res.output[:200]}"
                finally:
                    session.close()
        except Exception as exc:  # doctor reports, it does not crash
            row.update(available=row.get("available", False), works=False,
                       reason=f"{type(exc).__name__}: {exc}")
        rows.append(row)
    return rows


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
               no_run: bool = typer.Option(False, "--no-run", help="Only check, do not start sandboxes."),
               tier: list[str] = typer.Option(None, "--tier", help="Check only these tiers.")) -> None:
        """Report which Python sandbox tiers (subprocess, bwrap, docker) work here and why the others do not."""
        rows = diagnose(tuple(tier) if tier else None, run=not no_run)
        if as_json:
            print(json.dumps(rows, indent=2))
        else:
            from rich.console import Console
            from rich.table import Table
            table = Table(title="Python sandbox tiers (sandbox='auto' uses the strongest that works)")
            for col in ("tier", "works", "start", "fork", "details"):
                table.add_column(col)
            for r in rows:
                works = r.get("works", r.get("available"))
                table.add_row(r["tier"], "[green]yes[/]" if works else "[red]no[/]",
                              f"{r['start_s']:.2f} s" if "start_s" in r else "-",
                              f"{r['fork_ms']:.1f} ms" if "fork_ms" in r else "-", r.get("reason", ""))
            Console().print(table)
        if not any(r.get("works", r.get("available")) for r in rows):
            raise typer.Exit(1)
