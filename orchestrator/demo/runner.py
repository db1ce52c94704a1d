"""The demo scenario, run through the real Dagster machinery on the embedded default.

Every partition is materialized on the Dagster instance under DRIFTGATE_HOME, checks are
evaluated by Dagster, the real sensors are evaluated against that instance, and each RunRequest
they return is executed (with the daemon's run_key dedupe applied here, as the daemon would).
"""

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from orchestrator.adapters.home import HomeLayout
from orchestrator.bootstrap import (
    QUIET_LOGS,
    first_candidate,
    freeze_reference_window,
    replay_time,
)
from orchestrator.core.errors import DriftgateError
from orchestrator.core.registry import CHAMPION
from orchestrator.core.spec import MonitoredModelSpec
from orchestrator.core.training import score_model
from orchestrator.demo.simulator import Landing, Scenario, serving_events, simulate_day
from orchestrator.evidence import EVALUATED_AT_TAG, CheckEvaluation, check_in_run
from orchestrator.governance import Governance
from orchestrator.naming import ModelNames
from orchestrator.prediction_logger import PredictionLogger
from orchestrator.specs import load_spec

DEMO_MARKER = ".driftgate-demo"
DEMO_APPROVER = "demo-approver"
DEMO_MODEL = "churn"


@dataclass
class Timeline:
    """What happened, day by day, in the order it happened."""

    entries: list[tuple[str, str, str]] = field(default_factory=list)  # (date, kind, text)
    on_entry: Callable[[str, str, str], None] | None = None

    def add(self, date: dt.date | str, kind: str, text: str) -> None:
        entry = (str(date), kind, text)
        self.entries.append(entry)
        if self.on_entry:
            self.on_entry(*entry)

    def of_kind(self, kind: str) -> list[tuple[str, str, str]]:
        return [e for e in self.entries if e[1] == kind]


def prepare_home(home: HomeLayout, reset: bool) -> None:
    """Start from an empty home; only ever delete a home the demo itself created."""
    if home.root.exists() and any(home.root.iterdir()):
        if not reset:
            raise DriftgateError(f"{home.root} is not empty; pass --reset to start the demo over")
        if not (home.root / DEMO_MARKER).exists():
            raise DriftgateError(
                f"{home.root} holds state the demo did not create; refusing to delete it. "
                "Point DRIFTGATE_HOME at another folder."
            )
        shutil.rmtree(home.root)
    home.ensure()
    (home.root / DEMO_MARKER).write_text("created by driftgate demo\n")


class DemoRun:
    def __init__(
        self,
        scenario: Scenario,
        defs: dg.Definitions,
        instance: dg.DagsterInstance,
        spec: MonitoredModelSpec,
        governance: Governance,
        timeline: Timeline,
    ):
        self.scenario = scenario
        self.defs = defs
        self.instance = instance
        self.spec = spec
        self.names = ModelNames(spec.name)
        self.governance = governance
        self.timeline = timeline
        self.cursors: dict[str, str | None] = {}
        self.pending_approval: tuple[str, dt.date] | None = None  # (version, due date)
        self.landing = Landing(
            HomeLayout.resolve().data, spec.source.features_path, spec.source.labels_path
        )
        self.logger = PredictionLogger(spec, demo=True) if spec.telemetry.enabled else None
        self.models: dict[str, object] = {}

    # -- Dagster machinery -------------------------------------------------------------------

    def run_job(
        self, name: str, run_config: dict | None = None, **kwargs
    ) -> dg.ExecuteInProcessResult:
        return self.defs.resolve_job_def(name).execute_in_process(
            instance=self.instance,
            raise_on_error=False,
            run_config={**(run_config or {}), **QUIET_LOGS},
            **kwargs,
        )

    def tick(self, sensor_name: str) -> list[dg.ExecuteInProcessResult]:
        """Evaluate one sensor tick against the instance and launch what it requests."""
        sensor = self.defs.resolve_sensor_def(sensor_name)
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursors.get(sensor_name),
            definitions=self.defs,
            sensor_name=sensor_name,
            resources=self.defs.resources,
        )
        data = sensor.evaluate_tick(context)
        self.cursors[sensor_name] = data.cursor
        results = []
        for request in data.run_requests or []:
            if self._already_launched(sensor_name, request.run_key):
                self.timeline.add(
                    self.today,
                    "dedupe",
                    f"{sensor_name}: run_key {request.run_key} already launched, skipped",
                )
                continue
            tags = {
                **request.tags,
                "dagster/sensor_name": sensor_name,
                "dagster/run_key": request.run_key,
            }
            results.append(
                self.run_job(
                    sensor.job_name,
                    run_config=request.run_config,
                    tags=tags,
                    partition_key=request.partition_key,
                )
            )
        if data.skip_message:
            self.timeline.add(self.today, "sensor", f"{sensor_name}: {data.skip_message}")
        return results

    def _already_launched(self, sensor_name: str, run_key: str | None) -> bool:
        if run_key is None:
            return False
        runs = self.instance.get_runs(
            filters=dg.RunsFilter(
                tags={"dagster/sensor_name": sensor_name, "dagster/run_key": run_key}
            )
        )
        return bool(runs)

    def check(self, key: dg.AssetCheckKey, result: dg.ExecuteInProcessResult):
        return check_in_run(self.instance, key, result.run_id)

    # -- the scenario ------------------------------------------------------------------------

    def bootstrap(self) -> None:
        """Load the labelled reference window, train the first model, approve and promote it."""
        s = self.scenario
        for day in range(1, s.reference_days + 1):
            self.landing.land(s, day, features=True, labels=True)
        freeze_reference_window(self.spec, self.defs, self.instance)
        first, last = s.date(1), s.date(s.reference_days)
        self.today = last
        self.timeline.add(
            last,
            "history",
            f"reference window {first}..{last} landed with "
            f"labels ({s.reference_days} partitions, contract checks passed)",
        )
        run, _ = first_candidate(self.spec, self.defs, self.instance, "demo-bootstrap")
        self.after_retraining(run, review_after_days=0)

    def after_retraining(
        self, result: dg.ExecuteInProcessResult, review_after_days: int | None = None
    ) -> None:
        if review_after_days is None:
            review_after_days = self.scenario.approval_delay_days
        evaluation = self.check(self.names.evaluation_check, result)
        version = evaluation.value("version") if evaluation else None
        if version is None:
            self.timeline.add(
                self.today, "retrain", f"retraining registered no version (run {result.run_id[:8]})"
            )
            return
        self.timeline.add(
            self.today,
            "registered",
            f"v{version} registered in MLflow "
            f"(run {result.run_id[:8]}); evaluation gate: {evaluation.reason_text}",
        )
        if not evaluation.passed:
            return
        due = self.today + dt.timedelta(days=review_after_days)
        self.timeline.add(
            self.today,
            "awaiting",
            f"v{version} awaits approval (the demo approver reviews on {due})",
        )
        self.pending_approval = (str(version), due)
        self.review()

    def review(self) -> None:
        """The demo approver approves through the same code path as `driftgate approve`."""
        if self.pending_approval is None or self.pending_approval[1] > self.today:
            return
        version, _ = self.pending_approval
        self.pending_approval = None
        approved = self.governance.approve(
            version, DEMO_APPROVER, "demo: evaluation gate passed, metrics reviewed"
        )
        self.timeline.add(self.today, "approved", f"v{version} approved by {approved.approved_by}")
        previous = self.governance.registry.get_alias(self.spec.name, CHAMPION)
        for run in self.tick(self.names.promote_sensor):
            champion = self.governance.registry.get_alias(self.spec.name, CHAMPION)
            if run.success and champion is not None:
                replaced = f"v{previous.version}" if previous else "none"
                self.timeline.add(
                    self.today, "promoted", f"champion -> v{champion.version} (replaced {replaced})"
                )

    def serve(self, day: int) -> None:
        """The champion answers the day's requests; the serving process logs each one."""
        champion = self.governance.registry.get_alias(self.spec.name, CHAMPION)
        if self.logger is None or champion is None:
            return
        if champion.version not in self.models:
            loaded = self.governance.registry.load_model(self.spec.name, champion.version)
            self.models[champion.version] = loaded
        features = simulate_day(self.scenario, day)[0]
        scores = score_model(self.models[champion.version], features, self.spec)
        for event in serving_events(self.scenario, day, features, scores, champion.version):
            self.logger.log(**event)
        self.logger.flush()

    def watch_predictions(self) -> None:
        """Compact the day's events, judge SLAs, attach arrived labels, estimate quality; then
        measure realized quality for every day the labels touched."""
        partition = self.today.isoformat()
        result = self.run_job(self.names.predictions_job, partition_key=partition)
        checks = {"sla": self.check(self.names.sla_check, result)}
        if self.spec.performance.estimates:
            checks["estimated quality"] = self.check(self.names.estimated_check, result)
        self.timeline.add(self.today, "telemetry", describe_checks(**checks))
        for run in self.tick(self.names.measure_sensor):
            measured = run.dagster_run.tags.get("dagster/partition")
            checks = {f"realized quality of {measured}": self.check(self.names.realized_check, run)}
            if self.spec.performance.estimates:
                checks["estimate"] = self.check(self.names.agreement_check, run)
            self.timeline.add(self.today, "quality", describe_checks(**checks))

    def monitor(self, day: int) -> None:
        s = self.scenario
        self.today = s.date(day)
        self.review()
        self.landing.land(s, day, features=True, labels=True)
        self.serve(day)
        result = self.run_job(
            self.names.monitor_job,
            partition_key=self.today.isoformat(),
            tags={EVALUATED_AT_TAG: replay_time(self.today)},
        )
        self.timeline.add(
            self.today,
            "checks",
            describe_checks(
                fresh=self.check(self.names.freshness_check, result),
                contract=self.check(self.names.contract_check, result),
                drift=self.check(self.names.drift_check, result),
            ),
        )
        if self.logger is not None:
            self.watch_predictions()
        for run in self.tick(self.names.retrain_sensor):
            self.timeline.add(
                self.today,
                "retrain",
                f"retraining run {run.run_id[:8]} launched by {self.names.retrain_sensor}",
            )
            self.after_retraining(run)
        self.review()


def describe_checks(**evaluations: CheckEvaluation | None) -> str:
    """`fresh ok, contract ok, drift FAILED (worst ...)`; a check that did not run says so."""
    return ", ".join(
        evaluation.summary(label) if evaluation else f"{label} not evaluated"
        for label, evaluation in evaluations.items()
    )


@dataclass(frozen=True)
class DemoOptions:
    days: int = 30
    drift_day: int = 21
    seed: int = 7
    rows_per_day: int = 1500


def scenario_for(spec: MonitoredModelSpec, options: DemoOptions) -> Scenario:
    """The demo's days start with the model's configured reference window."""
    return Scenario(
        start=spec.reference_days[0],
        reference_days=len(spec.reference_days),
        days=options.days,
        drift_day=options.drift_day,
        seed=options.seed,
        rows_per_day=options.rows_per_day,
    )


def run_demo(
    home: HomeLayout,
    options: DemoOptions = DemoOptions(),
    reset: bool = True,
    on_entry: Callable[[str, str, str], None] | None = None,
) -> Timeline:
    spec = load_spec(DEMO_MODEL)
    scenario = scenario_for(spec, options)  # invalid options fail before anything is deleted
    prepare_home(home, reset)
    home.activate()
    from orchestrator.definitions import defs as load_defs

    defs = load_defs()
    timeline = Timeline(on_entry=on_entry)
    with dg.DagsterInstance.get() as instance:
        registry = defs.resources["model_registry"].registry()
        governance = Governance(spec, registry, defs.resources["audit"].log())
        demo = DemoRun(scenario, defs, instance, spec, governance, timeline)
        try:
            demo.bootstrap()
            for day in range(scenario.reference_days + 1, scenario.days + 1):
                demo.monitor(day)
        finally:
            if demo.logger is not None:
                demo.logger.close()
    return timeline
