"""kinesis_rs: the Kinesis producer (KPL) and consumer (KCL) of kinesis-rs, for Python.

- ``Producer(stream_name, region=None, endpoint_url=None, **kpl_options)``: ``put`` returns a
  ``PutHandle`` (``result()``, ``done()``, ``add_done_callback()``, ``await``, ``to_future()``)
  of a ``PutResult``; ``put_many`` puts an iterable of ``(key, data)`` tuples in one call;
  ``put_async`` returns an asyncio future.
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
    PutHandle,
    PutResult,
    Record,
    Scheduler,
    ShardEndedInput,
    ShutdownRequestedInput,
)
from kinesis_rs._native import close_all_producers as _native_close_all_producers
from kinesis_rs.errors import (
    CheckpointError,
    CredentialsError,
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
    "CredentialsError",
    "InitializeInput",
    "KinesisError",
    "LeaseLostInput",
    "ProcessRecordsInput",
    "Producer",
    "ProducerClosed",
    "PutError",
    "PutHandle",
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
