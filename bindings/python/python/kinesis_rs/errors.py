"""The exceptions the binding raises.

``KinesisError`` is the base of every error that is not a plain ``ValueError`` or ``TypeError``
about an argument (bad partition key, explicit hash key, oversized data, unknown option).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence


class KinesisError(Exception):
    """Base class of the errors raised by kinesis_rs."""


class StreamNotFound(KinesisError, LookupError):
    """The stream does not exist (or is not visible with these credentials and region)."""

    def __init__(self, message: str, stream_name: Optional[str] = None):
        super().__init__(message)
        self.stream_name = stream_name


class ProducerClosed(KinesisError):
    """``put`` on a producer that was closed."""


class UserRecord(NamedTuple):
    """A record handed back by a failed put."""

    partition_key: str
    data: bytes
    explicit_hash_key: Optional[str]


class PutError(KinesisError):
    """A record was not put. The record comes back in ``record`` (also ``partition_key``,
    ``data`` and ``explicit_hash_key``), with every attempt made (``attempts``)."""

    def __init__(
        self,
        message: str,
        partition_key: Optional[str] = None,
        data: Optional[bytes] = None,
        explicit_hash_key: Optional[str] = None,
        attempts: Sequence[object] = (),
    ):
        super().__init__(message)
        self.message = message
        self.partition_key = partition_key
        self.data = data
        self.explicit_hash_key = explicit_hash_key
        self.attempts = list(attempts)

    @property
    def record(self) -> Optional[UserRecord]:
        """The record, or None when it is unknown (``RecordAborted``)."""
        if self.partition_key is None:
            return None
        return UserRecord(self.partition_key, self.data, self.explicit_hash_key)


class RecordExpired(PutError):
    """The record was not put within ``RecordTtl``; every attempt failed."""


class RecordThrottled(PutError):
    """The record was throttled while ``FailIfThrottled`` is set."""


class RecordRejected(PutError):
    """Kinesis refused the record with an error retrying cannot fix (``code``,
    ``error_message``): stream deleted, access denied, ..."""

    def __init__(self, message, partition_key=None, data=None, explicit_hash_key=None,
                 attempts=(), code=None, error_message=None):
        super().__init__(message, partition_key, data, explicit_hash_key, attempts)
        self.code = code
        self.error_message = error_message


class RecordAborted(PutError):
    """The producer stopped before the record's fate was known; the record is lost to us."""


class CheckpointError(KinesisError):
    """A checkpoint was refused. As in amazon-kclpy, ``value`` is the name of the KCL exception:

    - ``"ShutdownException"``: this worker no longer holds the lease (stop processing);
    - ``"InvalidStateException"``: the position is beyond the last delivered record or behind the
      current checkpoint;
    - ``"KinesisClientLibDependencyException"``: the lease table could not be written (retry);
    - ``"IllegalArgumentException"``: the sequence number is not a sequence number.
    """

    def __init__(self, value: str, message: Optional[str] = None):
        super().__init__(value, message) if message else super().__init__(value)
        self.value = value
        self.message = message

    def __str__(self) -> str:
        if self.message:
            return f"{self.value}: {self.message}"
        return repr(self.value)


class CredentialsError(KinesisError):
    """No AWS credentials could be loaded when the producer or scheduler started (none in the
    environment, profile or instance metadata, or the provider failed or timed out). Pass
    ``verify_credentials=False`` for a provider whose credentials come only later."""


class SchedulerError(KinesisError):
    """The consumer could not start (lease table, shard listing, configuration) or stop cleanly."""
