"""The evidence bundle: everything an auditor takes away about one monitored model.

`driftgate audit export MODEL --out DIR` writes, for every registered version, a model card in
Markdown and HTML (purpose, training data lineage, metrics, gates, approvals, promotions), the
Dagster lineage of the runs that trained them, the approvals, the model's audit trail, and last a
manifest with the sha256 of every file. The bundle is written beside DIR and renamed into place,
so a failed export leaves no half bundle behind.
"""

import csv
import datetime as dt
import hashlib
import html
import io
import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from orchestrator.core.audit import AuditAction, AuditEvent, AuditLog, utc_now
from orchestrator.core.errors import DataError
from orchestrator.core.registry import (
    TAG_APPROVAL_REASON,
    TAG_APPROVED_AT,
    TAG_APPROVED_BY,
    TAG_CODE_VERSION,
    TAG_DAGSTER_RUN_ID,
    TAG_TRAINING_DATA_HASH,
    TAG_TRAINING_PARTITIONS,
    TAG_TRIGGER,
    TAG_TRIGGERED_BY,
    ModelRegistry,
    ModelVersion,
)
from orchestrator.core.spec import MonitoredModelSpec

MANIFEST = "manifest.json"
LINEAGE = "lineage.json"
APPROVALS = "approvals.csv"
AUDIT_LOG = "audit_log.jsonl"
VERSIONS_DIR = "versions"
NO_INSTANCE = "no Dagster instance"
NOT_RECORDED = "not recorded"

LINEAGE_TAGS = (
    TAG_TRAINING_PARTITIONS,
    TAG_TRAINING_DATA_HASH,
    TAG_CODE_VERSION,
    TAG_DAGSTER_RUN_ID,
    TAG_TRIGGER,
    TAG_TRIGGERED_BY,
)
APPROVAL_ACTIONS = (
    AuditAction.APPROVAL_GRANTED,
    AuditAction.APPROVAL_REFUSED,
    AuditAction.APPROVAL_REJECTED,
    AuditAction.APPROVAL_LAPSED,
)
PROMOTION_ACTIONS = (
    AuditAction.PROMOTION_STARTED,
    AuditAction.PROMOTED,
    AuditAction.PROMOTION_ABORTED,
    AuditAction.PROMOTION_REFUSED,
    AuditAction.ROLLED_BACK,
)
APPROVAL_COLUMNS = (
    "id",
    "at",
    "action",
    "actor",
    "version",
    "reason",
    "dagster_run_id",
    "evidence",
    "hash",
)
# Stated in the manifest so an auditor can recompute every hash of audit_log.jsonl unaided.
AUDIT_HASH_RECIPE = (
    "sha256 of json.dumps({action, actor, model, version, dagster_run_id, evidence, at, "
    "prev_hash, seq}, sort_keys=True) over the audit_log.jsonl fields; prev_hash chains every "
    "model's events, so a model's own events link to other models' events in between"
)


@dataclass(frozen=True)
class Section:
    """One section of a model card: a heading, an optional paragraph and an optional table.

    Markdown and HTML render the same sections, so the two cards cannot disagree.
    """

    title: str
    text: str = ""
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    empty: str = "None recorded."


# --- the export ------------------------------------------------------------------------------


def export_evidence(
    spec: MonitoredModelSpec,
    registry: ModelRegistry,
    audit: AuditLog,
    instance: dg.DagsterInstance | None,
    asset_graph: Mapping[str, Sequence[str]],
    out: Path,
) -> Path:
    """Write the evidence bundle of `spec`'s model into `out` and return its manifest's path.

    Refuses (DataError) when `out` exists and is not an empty directory. The bundle is built in
    a sibling directory and renamed to `out` only once complete.
    """
    out = Path(out)
    _refuse_occupied(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A sibling on the same filesystem, so the final rename is atomic.
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        _write_bundle(staging, spec, registry, audit, instance, asset_graph)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / MANIFEST


def _refuse_occupied(out: Path) -> None:
    """An export never mixes with, or overwrites, what is already at `out`."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(
            f"cannot export the evidence bundle to {out}: it exists and is not an empty "
            "directory; choose a new path"
        )


def _write_bundle(
    root: Path,
    spec: MonitoredModelSpec,
    registry: ModelRegistry,
    audit: AuditLog,
    instance: dg.DagsterInstance | None,
    asset_graph: Mapping[str, Sequence[str]],
) -> None:
    """Every file of the bundle, the manifest last so it covers all the others."""
    created_at = utc_now()
    # One snapshot of the chain, so the manifest's head is the head the exported events end at.
    chain = audit.events()
    events = [e for e in chain if e.model == spec.name]
    versions = registry.list_versions(spec.name)
    for version in versions:
        _write_model_card(root, spec, version, events)
    _write_lineage(root, spec.name, versions, instance, asset_graph)
    _write_approvals(root, events)
    _write_audit_log(root, events)
    _write_manifest(root, spec.name, created_at, chain)


def _write_text(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _write_json(root: Path, relative: str, value: object) -> Path:
    return _write_text(root, relative, json.dumps(value, indent=2, default=str) + "\n")


# --- model cards -----------------------------------------------------------------------------


def _write_model_card(
    root: Path, spec: MonitoredModelSpec, version: ModelVersion, events: Sequence[AuditEvent]
) -> None:
    """versions/v<N>.md and versions/v<N>.html, rendered from the same sections."""
    title = f"Model card: {spec.name} v{version.version}"
    sections = model_card(spec, version, events)
    _write_text(root, f"{VERSIONS_DIR}/v{version.version}.md", render_markdown(title, sections))
    _write_text(root, f"{VERSIONS_DIR}/v{version.version}.html", render_html(title, sections))


def model_card(
    spec: MonitoredModelSpec, version: ModelVersion, events: Sequence[AuditEvent]
) -> list[Section]:
    """The sections of one version's model card, from the registry and the audit trail."""
    own = [e for e in events if e.version == version.version]
    return [
        Section("Purpose", text=spec.description or "No description in the model spec."),
        _version_section(version),
        _lineage_section(version),
        _metrics_section(version),
        _gate_tags_section(version),
        _gate_events_section(own),
        _approvals_section(version, own),
        _promotions_section(version.version, events),
    ]


def _version_section(version: ModelVersion) -> Section:
    created = version.created_at.isoformat() if version.created_at else None
    rows = (
        ("model", version.name),
        ("version", version.version),
        ("MLflow run id", _cell(version.run_id)),
        ("aliases", _cell(", ".join(version.aliases))),
        ("registered at", _cell(created)),
    )
    return Section("Version", header=("field", "value"), rows=rows)


def _lineage_section(version: ModelVersion) -> Section:
    """Lineage tags are listed even when missing: an absent tag is itself evidence."""
    rows = tuple((tag, version.tags.get(tag) or NOT_RECORDED) for tag in LINEAGE_TAGS)
    partitions = version.training_partitions
    text = f"Trained on {len(partitions)} partition(s): {', '.join(partitions) or NOT_RECORDED}."
    return Section("Training data lineage", text=text, header=("tag", "value"), rows=rows)


def _metrics_section(version: ModelVersion) -> Section:
    """The metrics the registry recorded for the version (candidate and champion scores)."""
    rows = tuple((name, f"{value:.6g}") for name, value in sorted(version.metrics.items()))
    return Section("Metrics", header=("metric", "value"), rows=rows)


def _gate_tags_section(version: ModelVersion) -> Section:
    rows = tuple(sorted(version.gates.items()))
    return Section("Gate results (registry tags)", header=("gate", "verdict"), rows=rows)


def _gate_events_section(events: Sequence[AuditEvent]) -> Section:
    shown = ("gate", "verdict", "reason", "threshold")
    rows = tuple(
        (
            _when(e),
            _cell(e.evidence.get("gate")),
            _cell(e.evidence.get("verdict")),
            _cell(e.evidence.get("reason")),
            _compact(e.evidence.get("threshold")),
            e.actor,
            _cell(e.dagster_run_id),
            _details(e.evidence, shown),
        )
        for e in events
        if e.action is AuditAction.GATE_EVALUATED
    )
    header = ("when", "gate", "verdict", "reason", "threshold", "by", "Dagster run", "details")
    return Section("Gate evaluations (audit log)", header=header, rows=rows)


def _approvals_section(version: ModelVersion, events: Sequence[AuditEvent]) -> Section:
    tags = (TAG_APPROVED_BY, TAG_APPROVED_AT, TAG_APPROVAL_REASON)
    # The registry tags are what the MLflow UI shows; the audit events are the record of truth.
    text = "Registry tags: " + "; ".join(f"{t} = {version.tags.get(t) or '—'}" for t in tags)
    rows = tuple(
        (_when(e), e.action.value, e.actor, _cell(_reason(e)), _details(e.evidence, _REASON_KEYS))
        for e in events
        if e.action in APPROVAL_ACTIONS
    )
    header = ("when", "action", "who", "reason", "details")
    return Section("Approvals", text=text, header=header, rows=rows)


def _promotions_section(version: str, events: Sequence[AuditEvent]) -> Section:
    """Events that made this version champion, and those that replaced it (a rollback)."""
    shown = ("replaced_version", *_REASON_KEYS)
    rows = tuple(
        (
            _when(e),
            e.action.value,
            e.actor,
            _cell(e.version),
            _cell(e.evidence.get("replaced_version")),
            _cell(e.dagster_run_id),
            _cell(_reason(e)),
            _details(e.evidence, shown),
        )
        for e in events
        if e.action in PROMOTION_ACTIONS and version in (e.version, _replaced(e))
    )
    header = ("when", "action", "who", "version", "replaced version", "Dagster run", "reason")
    return Section("Promotion history", header=(*header, "details"), rows=rows)


# --- cells -----------------------------------------------------------------------------------

# Approval events carry `reason`; refusals carry `problems`, promotion refusals `reasons`.
_REASON_KEYS = ("reason", "reasons", "problems")


def _cell(value: object) -> str:
    return "—" if value is None or value == "" else str(value)


def _when(event: AuditEvent) -> str:
    return event.at.astimezone(dt.UTC).isoformat(timespec="seconds")


def _compact(value: object) -> str:
    if value is None or value == {}:
        return "—"
    return json.dumps(value, sort_keys=True, default=str)


def _replaced(event: AuditEvent) -> str | None:
    value = event.evidence.get("replaced_version")
    return None if value is None else str(value)


def _reason(event: AuditEvent) -> str:
    """The first reason-like evidence field, lists joined; empty when the event gives none."""
    for key in _REASON_KEYS:
        value = event.evidence.get(key)
        if isinstance(value, list | tuple):
            value = "; ".join(str(v) for v in value)
        if value:
            return str(value)
    return ""


def _details(evidence: Mapping[str, object], shown: Sequence[str]) -> str:
    """Evidence not shown in its own column, so nothing recorded is left out of the card."""
    return _compact({k: v for k, v in evidence.items() if k not in shown})


# --- rendering -------------------------------------------------------------------------------


def render_markdown(title: str, sections: Sequence[Section]) -> str:
    """A model card as Markdown (GitHub tables)."""
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.text:
            lines += [section.text, ""]
        if section.header:
            lines += _markdown_table(section)
    return "\n".join(lines)


def _markdown_table(section: Section) -> list[str]:
    if not section.rows:
        return [f"_{section.empty}_", ""]
    lines = [_markdown_row(section.header), "|" + "---|" * len(section.header)]
    lines += [_markdown_row(row) for row in section.rows]
    return [*lines, ""]


def _markdown_row(cells: Sequence[str]) -> str:
    # A pipe or a newline inside a cell would break the table.
    escaped = (c.replace("|", "\\|").replace("\n", " ") for c in cells)
    return "| " + " | ".join(escaped) + " |"


_CSS = (
    "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin-bottom:1em}"
    "th,td{border:1px solid #999;padding:.3em .6em;text-align:left;vertical-align:top}"
    "th{background:#eee}"
)


def render_html(title: str, sections: Sequence[Section]) -> str:
    """A model card as a self-contained HTML page with the same sections as the Markdown."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            body.append(f"<p>{html.escape(section.text)}</p>")
        if section.header:
            body.append(_html_table(section))
    head = f'<meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style>'
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>{head}</head>\n<body>\n'
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _html_table(section: Section) -> str:
    if not section.rows:
        return f"<p><em>{html.escape(section.empty)}</em></p>"
    header = "".join(f"<th>{html.escape(c)}</th>" for c in section.header)
    rows = (
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in section.rows
    )
    return (
        f"<table>\n<thead><tr>{header}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table>"
    )


# --- lineage ---------------------------------------------------------------------------------


def asset_lineage(defs: dg.Definitions, model: str) -> dict[str, list[str]]:
    """Upstream asset keys of each of `model`'s assets (keys whose first component is `model`)."""
    graph = defs.resolve_asset_graph()
    keys = [key for key in graph.get_all_asset_keys() if key.path[0] == model]
    return {
        key.to_user_string(): sorted(p.to_user_string() for p in graph.get(key).parent_keys)
        for key in sorted(keys, key=lambda k: k.to_user_string())
    }


def _write_lineage(
    root: Path,
    model: str,
    versions: Sequence[ModelVersion],
    instance: dg.DagsterInstance | None,
    asset_graph: Mapping[str, Sequence[str]],
) -> None:
    """lineage.json: the run behind each version, and the asset graph of the model."""
    lineage = {
        "model": model,
        "dagster_instance": "available" if instance is not None else NO_INSTANCE,
        "versions": [_version_lineage(v, instance) for v in versions],
        "asset_graph": {key: sorted(up) for key, up in sorted(asset_graph.items())},
    }
    _write_json(root, LINEAGE, lineage)


def _version_lineage(version: ModelVersion, instance: dg.DagsterInstance | None) -> dict:
    """The Dagster run that trained `version`, as the instance recorded it."""
    run_id = version.tags.get(TAG_DAGSTER_RUN_ID)
    entry: dict[str, object] = {"version": version.version, "dagster_run_id": run_id}
    if not run_id:
        return {**entry, "run": None, "note": "the version has no dagster_run_id tag"}
    if instance is None:
        return {**entry, "run": None, "note": NO_INSTANCE}
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        return {**entry, "run": None, "note": "the run is not in the Dagster instance"}
    return {**entry, "run": _run_summary(instance, record)}


def _run_summary(instance: dg.DagsterInstance, record: dg.RunRecord) -> dict:
    """Status, job, start and end (UTC) of one run, and the assets it materialized."""
    run = record.dagster_run
    return {
        "status": run.status.value,
        "job_name": run.job_name,
        "start_time": _timestamp(record.start_time),
        "end_time": _timestamp(record.end_time),
        "materializations": _materializations(instance, run.run_id),
    }


def _materializations(instance: dg.DagsterInstance, run_id: str) -> list[dict]:
    entries = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    return [
        {
            "asset_key": entry.asset_materialization.asset_key.to_user_string(),
            "partition": entry.asset_materialization.partition,
            "metadata_keys": sorted(entry.asset_materialization.metadata),
            "at": _timestamp(entry.timestamp),
        }
        for entry in entries
        if entry.asset_materialization is not None
    ]


def _timestamp(seconds: float | None) -> str | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()


# --- audit trail -----------------------------------------------------------------------------


def event_record(event: AuditEvent) -> dict:
    """An audit event as stored in the bundle: the hashed fields, plus id and hash."""
    return {
        "id": event.id,
        "at": event.at.astimezone(dt.UTC).isoformat(),
        "action": event.action.value,
        "actor": event.actor,
        "model": event.model,
        "version": event.version,
        "dagster_run_id": event.dagster_run_id,
        "evidence": dict(event.evidence),
        "prev_hash": event.prev_hash,
        "seq": event.seq,
        "hash": event.hash,
    }


def _write_audit_log(root: Path, events: Sequence[AuditEvent]) -> None:
    """audit_log.jsonl: every event of the model, one JSON object a line, in order."""
    # The same JSON encoding as AuditEvent.canonical, so the hashes can be recomputed.
    lines = (json.dumps(event_record(e), sort_keys=True, default=str) for e in events)
    _write_text(root, AUDIT_LOG, "".join(f"{line}\n" for line in lines))


def _write_approvals(root: Path, events: Sequence[AuditEvent]) -> None:
    """approvals.csv: every approval decision on the model, granted or not, in order."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=APPROVAL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for event in events:
        if event.action in APPROVAL_ACTIONS:
            record = event_record(event)
            record["reason"] = _reason(event)
            record["evidence"] = json.dumps(record["evidence"], sort_keys=True, default=str)
            writer.writerow({column: record[column] for column in APPROVAL_COLUMNS})
    _write_text(root, APPROVALS, buffer.getvalue())


# --- manifest --------------------------------------------------------------------------------


def _write_manifest(
    root: Path, model: str, created_at: dt.datetime, chain: Sequence[AuditEvent]
) -> None:
    """Written last: it fingerprints every other file and pins the audit chain's head."""
    own = [e for e in chain if e.model == model]
    manifest = {
        "model": model,
        "created_at": created_at.astimezone(dt.UTC).isoformat(),
        "audit_chain_head": chain[-1].hash if chain else None,
        "model_last_event_hash": own[-1].hash if own else None,
        "model_event_count": len(own),
        "audit_hash_recipe": AUDIT_HASH_RECIPE,
        "files": [_fingerprint(root, path) for path in _bundle_files(root)],
    }
    _write_json(root, MANIFEST, manifest)


def _bundle_files(root: Path) -> list[Path]:
    return sorted(
        (p for p in root.rglob("*") if p.is_file() and p != root / MANIFEST),
        key=lambda p: p.relative_to(root).as_posix(),
    )


def _fingerprint(root: Path, path: Path) -> dict:
    data = path.read_bytes()
    return {
        "path": path.relative_to(root).as_posix(),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
