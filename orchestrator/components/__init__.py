from orchestrator.components.monitored_model import MonitoredModel, build_model_definitions

__all__ = ["MonitoredModel", "build_model_definitions"]
