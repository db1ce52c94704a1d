"""`driftgate`: run the demo, approve and promote versions, and see where each model stands.

Heavy libraries (dagster, mlflow, great_expectations) are imported inside commands so that
`driftgate --help` answers at once.
"""

import functools
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from orchestrator.adapters.home import HomeLayout
from orchestrator.core.errors import DriftgateError

app = typer.Typer(
    help="Dagster-native drift monitoring and guarded retraining.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
audit_app = typer.Typer(help="The append-only audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@functools.cache
def _console() -> Console:
    """Wide enough for the tables when piped to a file or CI log, where rich assumes 80."""
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)


HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="State folder (default: $DRIFTGATE_HOME or ./.driftgate)."),
]

_KIND_STYLE = {
    "checks": "white",
    "sensor": "yellow",
    "retrain": "bold cyan",
    "registered": "cyan",
    "awaiting": "magenta",
    "approved": "green",
    "promoted": "bold green",
    "history": "blue",
    "dedupe": "yellow",
}


def _fail(error: Exception) -> None:
    _console().print(f"[bold red]error:[/] {error}")
    raise typer.Exit(code=1)


def _open_home(home: Path | None) -> HomeLayout:
    return HomeLayout.resolve(str(home) if home else None).activate()


def _audit(layout: HomeLayout):
    """The audit log the Dagster resources use (see `resources.audit_resource`)."""
    from orchestrator.resources import audit_resource

    return audit_resource(str(layout.root)).log()


def _governance(model: str, layout: HomeLayout):
    """The same registry and audit log the Dagster resources construct, over `layout`."""
    from orchestrator.governance import Governance
    from orchestrator.resources import RegistryResource
    from orchestrator.specs import load_spec

    registry = RegistryResource(home=str(layout.root)).registry()
    return Governance(load_spec(model), registry, _audit(layout))


@app.command()
def demo(
    days: Annotated[int, typer.Option(help="Days to simulate, reference window included.")] = 30,
    drift_day: Annotated[int, typer.Option(help="First day (1-based) with drift.")] = 21,
    seed: Annotated[int, typer.Option(help="Seed of the simulator.")] = 7,
    rows_per_day: Annotated[int, typer.Option(help="Prediction requests per day.")] = 1500,
    reset: Annotated[
        bool, typer.Option(help="Start over if the home holds an earlier demo.")
    ] = True,
    home: HomeOption = None,
) -> None:
    """Simulate a churn model's traffic with scripted drift and run the guarded loop on it."""
    import logging

    from orchestrator.demo.runner import DemoOptions, run_demo

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    layout = HomeLayout.resolve(str(home) if home else None)
    _console().print(f"[bold]driftgate demo[/] - state in {layout.root}")

    def show(date: str, kind: str, text: str) -> None:
        _console().print(
            f"{date}  [{_KIND_STYLE.get(kind, 'white')}]{kind:<10}[/] {text}", highlight=False
        )

    try:
        run_demo(layout, DemoOptions(days, drift_day, seed, rows_per_day), reset, on_entry=show)
    except (DriftgateError, ValueError) as e:
        _fail(e)
    _console().print(
        "\n[bold]Where to look next[/]\n"
        f"  make ui                      Dagster (http://127.0.0.1:3000) and MLflow "
        f"(http://127.0.0.1:5000) over {layout.root}\n"
        "  MLflow model page            http://127.0.0.1:5000/#/models/churn\n"
        "  .venv/bin/driftgate status churn      champion, candidates awaiting approval, checks\n"
        "  .venv/bin/driftgate audit log churn   every decision, in order"
    )


@app.command()
def bootstrap(
    model: str,
    by: Annotated[
        str | None, typer.Option("--by", help="Who starts it (or $DRIFTGATE_USER).")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Freeze a model's reference window and train its first candidate, ready for approval."""
    import dagster as dg

    from orchestrator.bootstrap import first_candidate, freeze_reference_window
    from orchestrator.definitions import defs as load_defs
    from orchestrator.specs import load_spec

    actor = by or os.environ.get("DRIFTGATE_USER")
    if not actor:
        _fail(DriftgateError("say who starts the model: --by NAME or DRIFTGATE_USER"))
    _open_home(home)
    spec, defs = load_spec(model), load_defs()
    try:
        with dg.DagsterInstance.get() as instance:
            freeze_reference_window(
                spec,
                defs,
                instance,
                on_day=lambda day: _console().print(
                    f"{day}  reference partition frozen, contract ok"
                ),
            )
            _, evaluation = first_candidate(spec, defs, instance, actor)
    except DriftgateError as e:
        _fail(e)
    version = evaluation.value("version")
    _console().print(f"{model} v{version} registered; evaluation gate: {evaluation.reason_text}")
    if evaluation.passed:
        _console().print(
            f"next: another approver runs `driftgate approve {model} {version} "
            "--by NAME --reason TEXT`"
        )


ByOption = Annotated[str | None, typer.Option("--by", help="Who acts (or $DRIFTGATE_USER).")]


def _identity(by: str | None) -> str:
    """Who acts: --by, else $DRIFTGATE_USER; never a silent default."""
    person = by or os.environ.get("DRIFTGATE_USER")
    if not person:
        _fail(DriftgateError("say who acts: --by NAME or DRIFTGATE_USER"))
    return person


@app.command()
def approve(
    model: str,
    version: str,
    by: ByOption = None,
    reason: Annotated[str, typer.Option(help="Why this version may serve.")] = "",
    home: HomeOption = None,
) -> None:
    """Approve a candidate version; once the policy's quorum approved it, the promotion sensor
    makes it champion."""
    approver = _identity(by)
    try:
        approved = _governance(model, _open_home(home)).approve(version, approver, reason)
    except DriftgateError as e:
        _fail(e)
    state = approved.tags.get("approval_state", "")
    _console().print(f"{model} v{approved.version} approved by {approver}: {state}")


@app.command()
def reject(
    model: str,
    version: str,
    by: ByOption = None,
    reason: Annotated[str, typer.Option(help="Why this version must not serve.")] = "",
    home: HomeOption = None,
) -> None:
    """Reject a candidate version: it can no longer be approved or promoted."""
    reviewer = _identity(by)
    try:
        _governance(model, _open_home(home)).reject(version, reviewer, reason)
    except DriftgateError as e:
        _fail(e)
    _console().print(f"{model} v{version} rejected by {reviewer}")


@app.command()
def rollback(
    model: str,
    to: Annotated[
        str | None, typer.Option(help="Version (default: the previous champion).")
    ] = None,
    by: ByOption = None,
    reason: Annotated[str, typer.Option(help="Why the champion must go back.")] = "",
    home: HomeOption = None,
) -> None:
    """Move `champion` back to an earlier champion, audited like a promotion, through the
    promotion job (so the drift reference and the audit trail asset follow)."""
    from orchestrator.core.audit import AuditAction
    from orchestrator.core.registry import CHAMPION

    actor = _identity(by)
    layout = _open_home(home)
    config = {"version": to or "", "actor": actor, "rollback_reason": reason}
    result, op = _run_promotion_job(model, config)
    governance = _governance(model, layout)
    if not result.is_node_success(op):
        refused = governance.audit.events(model, [AuditAction.PROMOTION_REFUSED])
        problems = refused[-1].evidence.get("problems", []) if refused else []
        _fail(DriftgateError(f"{model}: rollback refused: {'; '.join(problems) or 'see the run'}"))
    champion = governance.registry.get_alias(model, CHAMPION)
    _console().print(f"{model}: champion rolled back to v{champion.version} by {actor}")
    _warn_if_reference_failed(model, result)


def _run_promotion_job(model: str, config: dict):
    """Run `promote_<model>` in process with `config` for champion_model; (result, op name)."""
    import dagster as dg

    from orchestrator.bootstrap import QUIET_LOGS
    from orchestrator.definitions import defs as load_defs
    from orchestrator.naming import ModelNames

    names = ModelNames(model)
    # Dagster's beta notices are noise in a terminal.
    with warnings.catch_warnings(), dg.DagsterInstance.get() as instance:
        warnings.simplefilter("ignore", dg.BetaWarning)
        defs = load_defs()
        op = defs.resolve_assets_def(names.champion_model).op.name
        result = defs.resolve_job_def(names.promote_job).execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"ops": {op: {"config": config}}, **QUIET_LOGS},
        )
    return result, op


def _warn_if_reference_failed(model: str, result) -> None:
    """The alias moved; if a reference for the new champion failed, the checks that need it
    block (stale or missing reference) until it is rebuilt: exit non-zero so that a script
    notices."""
    from orchestrator.naming import ModelNames

    names = ModelNames(model)
    consequences = {
        names.reference_profile: "drift checks block",
        names.performance_reference: "performance checks fail for lack of evidence",
    }
    failed = [
        f"{key.to_user_string()} ({effect} until it is materialized again)"
        for key, effect in consequences.items()
        if key in _job_assets(result) and not result.is_node_success(key.to_python_identifier())
    ]
    if not result.success:
        what = "; ".join(failed) or "a step of the promotion job failed"
        _fail(
            DriftgateError(
                f"the new champion stands, but a reference failed: {what} "
                f"(Dagster run {result.run_id})"
            )
        )


def _job_assets(result) -> set:
    return set(result.job_def.asset_layer.executable_asset_keys)


@app.command()
def promote(
    model: str,
    version: str,
    by: Annotated[str | None, typer.Option("--by", help="Who asks (or $DRIFTGATE_USER).")] = None,
    home: HomeOption = None,
) -> None:
    """Run the promotion job now for an approved version, instead of waiting for the sensor."""
    layout = _open_home(home)
    try:
        governance = _governance(model, layout)
        governance.registry.get_version(model, version)  # an unknown version fails here, clearly
    except DriftgateError as e:
        _fail(e)
    actor = by or os.environ.get("DRIFTGATE_USER") or "cli"
    result, op = _run_promotion_job(model, {"version": version, "actor": actor})
    if not result.is_node_success(op):
        _fail(
            DriftgateError(
                f"{model} v{version} was not promoted: {governance.decide(version).explain()}"
            )
        )
    _console().print(f"{model}: champion is now v{version} (run {result.run_id[:8]})")
    _warn_if_reference_failed(model, result)


@app.command()
def status(
    model: Annotated[str | None, typer.Argument(help="One model; all when omitted.")] = None,
    home: HomeOption = None,
) -> None:
    """Champion, candidates awaiting approval, and the latest check results."""
    from orchestrator.specs import load_specs

    layout = _open_home(home)
    try:
        names = [model] if model else sorted(load_specs())
        for name in names:
            _print_status(name, layout)
    except DriftgateError as e:
        _fail(e)


def _print_status(model: str, layout: HomeLayout) -> None:
    import dagster as dg

    from orchestrator.core.registry import CHALLENGER, CHAMPION
    from orchestrator.evidence import check_history
    from orchestrator.naming import ModelNames

    governance = _governance(model, layout)
    registry = governance.registry
    _console().print(f"[bold]{model}[/]")
    for alias in (CHAMPION, CHALLENGER):
        version = registry.get_alias(model, alias)
        if version is None:
            _console().print(f"  {alias:<10} none")
            continue
        _console().print(
            f"  {alias:<10} v{version.version}  approved_by={version.approved_by}  "
            f"trained on {version.tags.get('training_partitions', '?')}  "
            f"gates={version.gates}"
        )
    waiting = governance.awaiting_approval()
    _console().print(
        "  awaiting approval: " + (", ".join(f"v{v.version}" for v in waiting) or "none")
    )
    names = ModelNames(model)
    table = Table("check", "partition", "result", "reason", box=None, padding=(0, 2))
    with dg.DagsterInstance.get() as instance:
        for key in (
            names.freshness_check,
            names.contract_check,
            names.drift_check,
            names.training_contract_check,
            names.evaluation_check,
        ):
            history = check_history(instance, key)
            if history:
                latest = history[0]
                table.add_row(
                    key.name,
                    latest.partition or "-",
                    "passed" if latest.passed else latest.severity.value,
                    latest.reason_text[:90],
                )
    _console().print(table)


@app.command()
def ui(
    dagster_port: Annotated[int, typer.Option(help="Dagster webserver port.")] = 3000,
    mlflow_port: Annotated[int, typer.Option(help="MLflow UI port.")] = 5000,
    home: HomeOption = None,
) -> None:
    """Dagster (webserver and daemon, so sensors run live) and the MLflow UI; Ctrl-C stops both."""
    from orchestrator.ui import serve

    layout = HomeLayout.resolve(str(home) if home else None)
    _console().print(
        f"Dagster  http://127.0.0.1:{dagster_port}\nMLflow   http://127.0.0.1:{mlflow_port}"
        f"\nstate    {layout.root}\nCtrl-C stops both."
    )
    raise typer.Exit(code=serve(layout, dagster_port, mlflow_port))


@audit_app.command("log")
def audit_log(
    model: Annotated[str | None, typer.Argument(help="One model; all when omitted.")] = None,
    home: HomeOption = None,
) -> None:
    """Every audited decision in the order it was recorded."""
    layout = HomeLayout.resolve(str(home) if home else None)
    if not layout.audit_db.exists() and not os.environ.get("DRIFTGATE_AUDIT_URL"):  # SQLite
        _fail(DriftgateError(f"no audit log at {layout.audit_db}"))
    table = Table(
        "id", "at (UTC)", "action", "actor", "model", "version", "run", "evidence", box=None
    )
    for event in _audit(layout).events(model=model):
        table.add_row(
            str(event.id),
            event.at.strftime("%Y-%m-%d %H:%M:%S"),
            event.action.value,
            event.actor,
            event.model,
            event.version or "",
            (event.dagster_run_id or "")[:8],
            _evidence_summary(event.evidence),
        )
    _console().print(table)


@audit_app.command("verify")
def audit_verify(home: HomeOption = None) -> None:
    """Check the whole trail: every hash, every link, and no move of champion left half done."""
    from orchestrator.audit_views import current_champions, verify_findings
    from orchestrator.resources import RegistryResource
    from orchestrator.specs import load_specs

    layout = _open_home(home)
    audit = _audit(layout)
    events = audit.events()
    specs = load_specs()
    models = sorted({e.model for e in events} | set(specs))
    registry = RegistryResource(home=str(layout.root)).registry()
    versions = [v for model in models for v in registry.list_versions(model)]
    policies = {name: spec.approval for name, spec in specs.items()}
    champions = current_champions(registry, models)
    findings = verify_findings(events, champions, versions, policies, audit.appended())
    for finding in findings:
        _console().print(f"[bold red]{finding.kind}:[/] {finding.detail}\n  -> {finding.remedy}")
    if findings:
        raise typer.Exit(code=1)
    head = events[-1].hash[:16] if events else "empty"
    _console().print(f"audit trail intact: {len(events)} events, head {head}")


@audit_app.command("live")
def audit_live(
    model: str,
    at: Annotated[str, typer.Option(help="Instant, ISO 8601 (UTC if no zone): 2026-11-20T10:00Z")],
    home: HomeOption = None,
) -> None:
    """Which version was champion at an instant, since when, approved by whom and why, trained
    on what, after which gates."""
    import datetime as dt

    from orchestrator.audit_views import live_champion
    from orchestrator.resources import RegistryResource
    from orchestrator.specs import load_spec

    try:
        instant = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        _fail(DriftgateError(f"--at {at!r} is not an ISO 8601 instant"))
    instant = instant if instant.tzinfo else instant.replace(tzinfo=dt.UTC)
    layout = _open_home(home)
    registry = RegistryResource(home=str(layout.root)).registry()
    try:
        policy = load_spec(model).approval
        live = live_champion(model, registry, _audit(layout).events(model), instant, policy)
    except DriftgateError as e:
        _fail(e)
    if live is None:
        _fail(DriftgateError(f"{model} had no champion at {instant.isoformat()}"))
    _print_live(model, live)


def _print_live(model: str, live) -> None:
    console, tenure = _console(), live.tenure
    console.print(
        f"{model} champion: v{tenure.version} since {tenure.since:%Y-%m-%d %H:%M:%S}Z "
        f"({tenure.move.action.value} by {tenure.move.actor}; replaced "
        f"v{tenure.previous or 'none'})"
    )
    for approval in live.approvals:
        reason = approval.evidence.get("reason") or "(no reason given)"
        console.print(
            f"  approved by {approval.actor} at {approval.at:%Y-%m-%d %H:%M:%S}Z: {reason}"
        )
    console.print(f"  trained on {live.training}")
    console.print(f"  gates: {live.version.gates}")
    for gate in live.gate_events:
        console.print(
            f"    {gate.evidence.get('gate')}: {gate.evidence.get('verdict')} - "
            f"{gate.evidence.get('reason')} (run {(gate.dagster_run_id or '')[:8]})"
        )


@audit_app.command("recover")
def audit_recover(
    model: str,
    by: ByOption = None,
    now: Annotated[
        bool, typer.Option("--now", help="Also intents under 5 minutes old (none in flight).")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Close moves of champion a crash left half done, by what MLflow shows."""
    import datetime as dt

    actor = _identity(by)
    age = dt.timedelta(0) if now else dt.timedelta(minutes=5)
    try:
        closed = _governance(model, _open_home(home)).recover(actor, older_than=age)
    except DriftgateError as e:
        _fail(e)
    for event in closed:
        _console().print(f"{model}: recorded v{event.version} as {event.action.value}")
    if not closed:
        _console().print(f"{model}: nothing to recover")


@audit_app.command("export")
def audit_export(
    model: str,
    out: Annotated[Path, typer.Option(help="Folder to create for the evidence bundle.")],
    home: HomeOption = None,
) -> None:
    """An evidence bundle: model cards, lineage, approvals, the log, and a hashed manifest."""
    import dagster as dg

    from orchestrator.definitions import defs as load_defs
    from orchestrator.evidence_bundle import asset_lineage, export_evidence

    layout = _open_home(home)
    governance = _governance(model, layout)
    with warnings.catch_warnings():  # Dagster's beta notices are noise in an auditor's terminal
        warnings.simplefilter("ignore", dg.BetaWarning)
        lineage = asset_lineage(load_defs(), model)
    with dg.DagsterInstance.get() as instance:
        try:
            manifest = export_evidence(
                governance.spec,
                governance.registry,
                governance.audit,
                instance,
                lineage,
                out,
            )
        except DriftgateError as e:
            _fail(e)
    _console().print(f"{model}: evidence bundle in {out} (manifest {manifest.name})")


def _evidence_summary(evidence: dict) -> str:
    for key in ("reason", "partition", "replaced_version", "training_partitions"):
        if evidence.get(key):
            return f"{key}: {evidence[key]}"[:100]
    return ""


telemetry_app = typer.Typer(help="Prediction events of monitored models.", no_args_is_help=True)
app.add_typer(telemetry_app, name="telemetry")


@telemetry_app.command("ingest")
def telemetry_ingest(
    model: str,
    paths: Annotated[list[Path], typer.Argument(help="Parquet, CSV or JSON-lines files.")],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="parquet, csv or jsonl (default: from each suffix)."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Validate, redact and store prediction events a serving stack already logged; rows that
    break the contract go to quarantine with their file row numbers and reasons."""
    from orchestrator.core.errors import ConfigError, DataError
    from orchestrator.specs import load_spec
    from orchestrator.telemetry_ingest import ingest

    layout = HomeLayout.resolve(str(home) if home else None)
    try:
        report = ingest(load_spec(model), paths, home=layout.root, fmt=fmt)
    except (ConfigError, DataError) as e:
        _console().print(f"[bold red]error:[/] {e}")
        raise typer.Exit(code=2) from e
    _console().print(
        f"{model}: {report.events:,} events from {report.files} file(s): "
        f"[green]{report.accepted:,} accepted[/], "
        f"[{'yellow' if report.rejected else 'green'}]{report.rejected:,} rejected[/]"
    )
    for path in report.quarantine_files:
        _console().print(f"  quarantined: {path}")
    if report.rejected:
        _console().print(
            "  rejected rows keep their file row number and reason (columns row, field, reason)"
        )
