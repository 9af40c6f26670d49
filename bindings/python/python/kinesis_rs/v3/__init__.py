"""amazon-kclpy v3 compatible processor interface (``from kinesis_rs.v3 import processor``)."""

from kinesis_rs.v3 import processor

__all__ = ["processor"]
