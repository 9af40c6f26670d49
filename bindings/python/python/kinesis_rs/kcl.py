"""What amazon-kclpy's ``kcl`` module offers a record processor, backed by kinesis_rs.

Porting an amazon-kclpy v3 application is a change of imports::

    from kinesis_rs import kcl               # was: from amazon_kclpy import kcl
    from kinesis_rs.v3 import processor      # was: from amazon_kclpy.v3 import processor

and, instead of ``kcl.KCLProcess(RecordProcessor()).run()`` under the MultiLangDaemon,
``kinesis_rs.Scheduler(stream, application, RecordProcessor, ...).run()`` in the process itself.
"""

from kinesis_rs._native import Checkpointer
from kinesis_rs.errors import CheckpointError
from kinesis_rs.v3.processor import RecordProcessorBase

__all__ = ["Checkpointer", "CheckpointError", "RecordProcessorBase"]
