"""``sdeval checks`` and ``sdeval metrics``: what the gate can measure."""

from __future__ import annotations

import click


@click.command("checks")
def list_checks() -> None:
    """List the named checks, their rules and default thresholds."""
    from sdeval.gates.checks import CHECKS, FAMILIES

    for name, check in CHECKS.items():
        click.echo(f"{name}: {check.description}")
        for i, r in enumerate(check.rules):
            key = check.key(i)
            tune = f"; [check.{name}] {key} = ..." if key != r.metric else ""
            click.echo(f"    {r.describe()}    ({r.why}{tune})")
    for fam, members in FAMILIES.items():
        click.echo(f"family {fam}: {', '.join(members)}")


@click.command("metrics")
def list_metrics() -> None:
    """List the metrics sdeval knows (built-in and plug-ins) and where each comes from."""
    import warnings

    from sdeval.metrics import registry

    with warnings.catch_warnings():  # the problems are listed below, once
        warnings.simplefilter("ignore", registry.PluginWarning)
        names = registry.names()
    for name in names:
        cls = registry.get_class(name)
        direction = "higher is better" if cls.higher_is_better else "lower is better"
        origin = registry.origin(name).describe()
        click.echo(f"{name:<16} {cls.kind:<6} {direction:<17} {cls.unit:<22} {origin:<28} {cls.description}")
    for problem in registry.plugin_problems():
        click.echo(f"warning: {problem.message}", err=True)
