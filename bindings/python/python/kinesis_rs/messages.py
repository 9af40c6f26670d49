"""The inputs a record processor receives, shaped like amazon-kclpy's ``messages`` module."""

from kinesis_rs._native import (
    InitializeInput,
    LeaseLostInput,
    ProcessRecordsInput,
    Record,
    ShardEndedInput,
    ShutdownRequestedInput,
)

__all__ = [
    "InitializeInput",
    "LeaseLostInput",
    "ProcessRecordsInput",
    "Record",
    "ShardEndedInput",
    "ShutdownRequestedInput",
]
