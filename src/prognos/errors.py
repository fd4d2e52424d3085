"""The one exception hierarchy of prognos.

Third-party errors are translated where they enter (``raise ... from exc``) so callers, the CLI and
(later) the HTTP layer only ever handle these types.
"""

from __future__ import annotations

from typing import Any


def _restore(kind: type[PrognosError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = kind.__new__(kind)
    error.args = args
    error.__dict__.update(state)
    return error


class PrognosError(Exception):
    """Base of every error prognos raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (the service's compute process); the default pickling
        # calls ``cls(*args)``, which breaks for subclasses with keyword-only parameters.
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class ConfigError(PrognosError):
    """A setting, spec or YAML config is invalid or missing."""


class TrainingError(PrognosError):
    """A training run could not complete for a reason outside its data and config (a worker
    process of the training died)."""


class DataSourceError(PrognosError):
    """A data source string or file cannot be read (bad ``KIND:PATH``, missing file, bad format)."""


class SchemaError(PrognosError):
    """Data does not have the columns or types its fleet spec declares."""


class DataValidationError(PrognosError):
    """A batch failed validation in a way that leaves nothing usable."""


class LabelError(PrognosError):
    """Labels cannot be derived (wrong data shape for the label rule, missing event log, ...)."""


class NotFittedError(PrognosError):
    """A transformer or model was used before ``fit``."""


class NotFoundError(PrognosError):
    """A thing asked for by id (prediction, asset, model version) does not exist."""


class UnknownAssetError(NotFoundError):
    """An asset id that the store or model has never seen."""


class ReadingRejectedError(PrognosError):
    """A single reading cannot be accepted; ``reason`` names the rule it broke."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class DuplicateReadingError(ReadingRejectedError):
    """A reading for an (asset, time) that was already accepted."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="duplicate")


class ConflictingReadingError(ReadingRejectedError):
    """A reading at an already accepted (asset, time) with different values: the first stands."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="conflict")


class OutOfOrderReadingError(ReadingRejectedError):
    """A reading older than the asset's latest accepted one."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="out_of_order")


class StateStoreError(PrognosError):
    """The online feature state store (e.g. Redis) is unreachable or returned garbage."""


class StateStoreLostError(StateStoreError):
    """The state store answers but lost the states it held (a Redis restarted empty)."""


class StateNotReadyError(StateStoreError):
    """Online state has not been rebuilt from the stored readings yet (the database was
    unreachable): answering now would predict from a truncated history."""


class StorageError(PrognosError):
    """The database rejected an operation or a record cannot be stored (bad row, schema missing)."""


class StorageUnavailableError(StorageError):
    """The database cannot be reached; retrying later may succeed."""


# -- streaming (and the reading checks it shares with HTTP in ingestion.readings) ---------------


class UnknownChannelError(ReadingRejectedError, SchemaError):
    """A reading names a sensor or setting its fleet does not have (a typo must not pass as a
    missing optional sensor)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="unknown_channel")


class StreamError(PrognosError):
    """The message broker cannot be reached or refused us (bad URL, credentials, subscription)."""


# -- alerting -----------------------------------------------------------------------------------


class NotificationError(PrognosError):
    """An alert could not be delivered (the receiver refused it or cannot be reached);
    ``retryable`` says whether trying again may succeed. Never carries a webhook URL."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


# -- planning -----------------------------------------------------------------------------------


class PlanError(PrognosError):
    """A maintenance plan cannot be made from what it was given (crews or days below 1, a missing
    or negative RUL, a broken interval) or the solver found none."""


# -- the data lake ------------------------------------------------------------------------------


class LakeError(DataSourceError):
    """The Parquet lake cannot be read or written (bad URL, a fleet it does not hold, a file that
    cannot be written or is damaged)."""


class SnapshotMismatchError(LakeError):
    """A training snapshot cannot be rebuilt exactly: a file it lists is missing, or the rows
    rebuilt hash to something else than the snapshot says."""


# -- fleet scale --------------------------------------------------------------------------------


class EngineError(PrognosError):
    """The distributed engine cannot run the job: PySpark or Java is missing, the session cannot
    start, or a Spark job failed (its first line kept, the JVM stack trace dropped)."""
