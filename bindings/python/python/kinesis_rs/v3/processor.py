"""The record processor interface of amazon-kclpy v3, for Scheduler processors.

A processor written for ``amazon_kclpy.v3.processor.RecordProcessorBase`` runs unchanged with
``from kinesis_rs.v3 import processor``.
"""

import abc


class RecordProcessorBase(abc.ABC):
    """Processes one shard: ``initialize`` once, ``process_records`` any number of times, then
    exactly one of ``lease_lost``, ``shard_ended`` or ``shutdown_requested``. Calls for one shard
    never overlap; they run on a worker thread with the GIL held."""

    version = 3

    @abc.abstractmethod
    def initialize(self, initialize_input):
        """Called before the first batch, with ``shard_id`` and the starting checkpoint
        (``sequence_number``, ``sub_sequence_number``).

        :param kinesis_rs.messages.InitializeInput initialize_input:
        """
        raise NotImplementedError

    @abc.abstractmethod
    def process_records(self, process_records_input):
        """Processes a batch (``records``, ``millis_behind_latest``, ``checkpointer``).

        :param kinesis_rs.messages.ProcessRecordsInput process_records_input:
        """
        raise NotImplementedError

    @abc.abstractmethod
    def lease_lost(self, lease_lost_input):
        """Another worker took the shard; checkpointing is no longer possible.

        :param kinesis_rs.messages.LeaseLostInput lease_lost_input:
        """
        raise NotImplementedError

    @abc.abstractmethod
    def shard_ended(self, shard_ended_input):
        """The shard is closed and fully read: call ``shard_ended_input.checkpointer.checkpoint()``,
        or the child shards are not processed.

        :param kinesis_rs.messages.ShardEndedInput shard_ended_input:
        """
        raise NotImplementedError

    @abc.abstractmethod
    def shutdown_requested(self, shutdown_requested_input):
        """The worker is shutting down; checkpoint what was processed.

        :param kinesis_rs.messages.ShutdownRequestedInput shutdown_requested_input:
        """
        raise NotImplementedError
