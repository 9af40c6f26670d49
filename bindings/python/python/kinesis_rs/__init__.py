"""kinesis_rs: the Kinesis producer (KPL) and consumer (KCL) of kinesis-rs, for Python.

- ``Producer(stream_name, region=None, endpoint_url=None, **kpl_options)``: ``put`` returns a
  ``concurrent.futures.Future`` of a ``PutResult``; ``put_async`` an awaitable.
- ``Scheduler(stream_name, application_name, processor_factory, ...)``: a KCL worker whose
  processors follow amazon-kclpy v3's ``RecordProcessorBase`` (see ``kinesis_rs.kcl``).
"""

import atexit

from kinesis_rs._native import (
    Attempt,
    Checkpointer,
    InitializeInput,
    LeaseLostInput,
    ProcessRecordsInput,
    Producer,
    PutResult,
    Record,
    Scheduler,
    ShardEndedInput,
    ShutdownRequestedInput,
)
from kinesis_rs._native import close_all_producers as _native_close_all_producers
from kinesis_rs.errors import (
    CheckpointError,
    KinesisError,
    ProducerClosed,
    PutError,
    RecordAborted,
    RecordExpired,
    RecordRejected,
    RecordThrottled,
    SchedulerError,
    StreamNotFound,
    UserRecord,
)

# Records put without a close() are delivered (or fail, resolving their futures) at exit.
atexit.register(_native_close_all_producers)

__all__ = [
    "Attempt",
    "CheckpointError",
    "Checkpointer",
    "InitializeInput",
    "KinesisError",
    "LeaseLostInput",
    "ProcessRecordsInput",
    "Producer",
    "ProducerClosed",
    "PutError",
    "PutResult",
    "Record",
    "RecordAborted",
    "RecordExpired",
    "RecordRejected",
    "RecordThrottled",
    "Scheduler",
    "SchedulerError",
    "ShardEndedInput",
    "ShutdownRequestedInput",
    "StreamNotFound",
    "UserRecord",
]
