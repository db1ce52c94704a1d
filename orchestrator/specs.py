"""Monitored-model specs read straight from the Component YAML, for the CLI and the demo.

The CLI must answer quickly, so this reads the same YAML Dagster loads without importing Dagster;
validation is the same pydantic model, so both see the same errors.
"""

from pathlib import Path

import yaml
from pydantic import ValidationError

from orchestrator.core.errors import ConfigError
from orchestrator.core.spec import MonitoredModelSpec

COMPONENT_TYPE = "orchestrator.components.MonitoredModel"
DEFS_DIR = Path(__file__).parent / "defs"


def load_specs(defs_dir: Path = DEFS_DIR) -> dict[str, MonitoredModelSpec]:
    specs = {}
    for path in sorted(defs_dir.glob("*/defs.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("type") != COMPONENT_TYPE:
                continue
            try:
                spec = MonitoredModelSpec.model_validate(document.get("attributes", {}))
            except ValidationError as e:
                raise ConfigError(f"{path}: {e}") from e
            specs[spec.name] = spec
    return specs


def load_spec(name: str, defs_dir: Path = DEFS_DIR) -> MonitoredModelSpec:
    specs = load_specs(defs_dir)
    if name not in specs:
        raise ConfigError(f"no monitored model named {name!r}; known: {sorted(specs)}")
    return specs[name]
