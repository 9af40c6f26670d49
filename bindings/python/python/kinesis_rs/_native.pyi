"""Type stubs for the Rust extension module (checked against it by tests/test_stubs.py)."""

import asyncio
import concurrent.futures
import datetime
from types import TracebackType
from collections.abc import Generator, Iterable
from typing import Any, Callable, Literal, Self

_OptionValue = bool | int | str

class Attempt:
    """One try at putting a record, as the KPL reports it."""

    @property
    def started(self) -> float:
        """When the attempt's request was sent (seconds since the Unix epoch)."""
    @property
    def delay_ms(self) -> float:
        """Milliseconds from the put (or the previous attempt) until this attempt was sent."""
    @property
    def duration_ms(self) -> float:
        """Milliseconds the request took."""
    @property
    def successful(self) -> bool: ...
    @property
    def error_code(self) -> str | None:
        """The Kinesis error code, or ``Timeout`` / ``ConnectionError``; None on success."""
    @property
    def error_message(self) -> str | None: ...

class PutResult:
    """Where a record landed: what a put's future resolves to."""

    @property
    def shard_id(self) -> str: ...
    @property
    def sequence_number(self) -> str: ...
    @property
    def sub_sequence_number(self) -> int | None:
        """Its index in the Kinesis record's aggregate; None when it was sent on its own."""
    @property
    def attempts(self) -> list[Attempt]:
        """Every attempt, the last one successful."""
    @property
    def successful(self) -> Literal[True]: ...
    def to_dict(self) -> dict[str, Any]: ...

class PutHandle:
    """The outcome of one put, like a ``concurrent.futures.Future`` (awaitable as well). A put
    cannot be cancelled."""

    def result(self, timeout: float | None = None) -> PutResult:
        """Waits (GIL released) up to ``timeout`` s; raises the put's error (RecordExpired, ...,
        carrying the record) or TimeoutError."""
    def exception(self, timeout: float | None = None) -> BaseException | None: ...
    def done(self) -> bool:
        """Whether the record resolved. Never waits."""
    def add_done_callback(self, callback: Callable[[PutHandle], object]) -> None:
        """Calls ``callback(handle)`` once resolved: at once if it is, else on the completer thread."""
    def cancel(self) -> Literal[False]: ...
    def cancelled(self) -> Literal[False]: ...
    def running(self) -> bool: ...
    def to_future(self) -> concurrent.futures.Future[PutResult]:
        """A ``concurrent.futures.Future`` of the result (for ``concurrent.futures.wait``)."""
    def __await__(self) -> Generator[Any, None, PutResult]: ...

class Producer:
    """A Kinesis producer (the KPL's design): aggregation, collection, per-record retries.

    ``kpl_options`` are KPL option names (``RecordMaxBufferedTime=100``, ``AggregationEnabled=False``,
    ``MaxOutstandingRecords``, ``MaxInFlightBytes``, ...); durations in milliseconds.
    """

    def __init__(
        self,
        stream_name: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        verify_credentials: bool = True,
        **kpl_options: _OptionValue,
    ) -> None: ...
    def put(
        self,
        partition_key: str,
        data: bytes | bytearray | memoryview | str,
        explicit_hash_key: str | None = None,
    ) -> PutHandle:
        """Puts a record; the handle fails with RecordExpired, RecordThrottled, RecordRejected or
        RecordAborted, each carrying the record. Raises ValueError for an invalid record."""
    def put_many(
        self,
        records: Iterable[
            tuple[str, bytes | bytearray | memoryview | str]
            | tuple[str, bytes | bytearray | memoryview | str, str | None]
        ],
    ) -> list[PutHandle]:
        """Puts every ``(partition_key, data[, explicit_hash_key])`` in one call; all are checked
        first (a bad one raises, naming its index, and nothing is put)."""
    def put_async(
        self,
        partition_key: str,
        data: bytes | bytearray | memoryview | str,
        explicit_hash_key: str | None = None,
    ) -> asyncio.Future[PutResult]: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
    @property
    def stream_name(self) -> str: ...
    @property
    def outstanding_records(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool: ...

class Record:
    """A user record delivered to a processor, like amazon-kclpy's ``messages.Record``."""

    @property
    def binary_data(self) -> bytes: ...
    @property
    def data(self) -> str:
        """The data, base64-encoded (as amazon-kclpy's ``data``)."""
    @property
    def partition_key(self) -> str: ...
    @property
    def explicit_hash_key(self) -> str | None: ...
    @property
    def sequence_number(self) -> str: ...
    @property
    def sub_sequence_number(self) -> int: ...
    @property
    def aggregated(self) -> bool: ...
    @property
    def timestamp_millis(self) -> int | None: ...
    @property
    def approximate_arrival_timestamp(self) -> datetime.datetime | None: ...
    def get(self, field: str) -> Any: ...
    def __getitem__(self, key: str, /) -> Any: ...

class Checkpointer:
    """Checkpoints one shard, like amazon-kclpy's ``kcl.Checkpointer``."""

    def checkpoint(
        self, sequence_number: str | int | None = None, sub_sequence_number: int | None = None
    ) -> None: ...
    def prepare_checkpoint(
        self, sequence_number: str | int, sub_sequence_number: int | None = None
    ) -> None: ...
    @property
    def shard_id(self) -> str: ...

class InitializeInput:
    @property
    def shard_id(self) -> str: ...
    @property
    def sequence_number(self) -> str: ...
    @property
    def sub_sequence_number(self) -> int: ...
    @property
    def pending_checkpoint_sequence_number(self) -> str | None: ...
    @property
    def pending_checkpoint_sub_sequence_number(self) -> int | None: ...
    @property
    def action(self) -> Literal["initialize"]: ...

class ProcessRecordsInput:
    @property
    def records(self) -> list[Record]: ...
    @property
    def millis_behind_latest(self) -> int | None: ...
    @property
    def checkpointer(self) -> Checkpointer: ...
    @property
    def action(self) -> Literal["processRecords"]: ...

class LeaseLostInput:
    @property
    def action(self) -> Literal["leaseLost"]: ...

class ShardEndedInput:
    @property
    def checkpointer(self) -> Checkpointer: ...
    @property
    def action(self) -> Literal["shardEnded"]: ...

class ShutdownRequestedInput:
    @property
    def checkpointer(self) -> Checkpointer: ...
    @property
    def action(self) -> Literal["shutdownRequested"]: ...

class Scheduler:
    """A KCL worker: leases in DynamoDB, one processor per leased shard.

    ``lease_options`` are KCL lease option names; see the README.
    """

    def __init__(
        self,
        stream_name: str,
        application_name: str,
        processor_factory: Callable[[], Any],
        region: str | None = None,
        endpoint_url: str | None = None,
        dynamodb_endpoint_url: str | None = None,
        initial_position: Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"] | str = "TRIM_HORIZON",
        initial_position_timestamp: datetime.datetime | float | None = None,
        worker_id: str | None = None,
        failover_time_millis: int = 10_000,
        max_records: int = 10_000,
        idle_time_between_reads_millis: int = 1_500,
        shard_sync_interval_millis: int = 60_000,
        parent_shard_poll_interval_millis: int = 10_000,
        max_leases_for_worker: int | None = None,
        max_leases_to_steal_at_one_time: int = 1,
        retry_failed_batches: bool = True,
        retrieval_mode: Literal["POLLING", "FANOUT"] | str = "POLLING",
        consumer_name: str | None = None,
        verify_credentials: bool = True,
        **lease_options: _OptionValue,
    ) -> None: ...
    def start(self) -> None: ...
    def shutdown(self) -> None: ...
    def run(self) -> None: ...
    @property
    def worker_id(self) -> str: ...
    @property
    def running(self) -> bool: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool: ...

def close_all_producers() -> None:
    """Closes every producer still open (registered with ``atexit`` by ``kinesis_rs``)."""
