"""One exception hierarchy for driftgate. A blocked gate is a value (GateResult), not an error."""


class DriftgateError(Exception):
    """Root of every error driftgate raises on purpose."""


class ConfigError(DriftgateError, ValueError):
    """A monitored model's configuration is invalid; the message names the field."""


class DataError(DriftgateError):
    """Input data does not have the shape a step needs (missing partition, missing column)."""


class NotFittedError(DriftgateError):
    """A stateful statistic was used before `fit`."""


class UnknownMethodError(DriftgateError, ValueError):
    """A drift method name is not in the registry; the message lists the valid names."""


class RegistryError(DriftgateError):
    """The model registry refused or failed an operation."""


class ApprovalRefused(DriftgateError):
    """An approval was refused by the approval policy; the message says why."""


class PromotionRefused(DriftgateError):
    """A promotion was refused; the champion is left as it was."""
