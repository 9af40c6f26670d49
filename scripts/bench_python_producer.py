"""One producer of the Python producer benchmark, in its own process (scripts/bench-python-producer).

    python bench_python_producer.py MODE --endpoint URL --records N [--stream S]

MODE is one of
  put          kinesis_rs.Producer.put, every handle kept until the end, then every result checked
  put_many     kinesis_rs.Producer.put_many in chunks of 10,000 (the tuples made in the loop), the
               same
  put_dropped  kinesis_rs.Producer.put, each handle dropped at once (memory when nobody keeps them)
  boto3        a boto3 put_records loop, 500 records a call, no aggregation, every answer checked
  aiokpl       aiokpl's asyncio Producer.put_record, every Outcome kept, then awaited and checked

Records are 100 random bytes (one object, as a loop over a message would pass) with the key
str(i), made inside the timed loop. The clock runs from the first put until every outcome is
checked; CPU is the process's (every thread: user + system) over the same span, from
getrusage; peak RSS is the process's whole-life peak (ru_maxrss). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time

CHUNK = 10_000
DATA = os.urandom(100)
REGION = "us-east-1"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_put(args) -> int:
    import kinesis_rs

    with kinesis_rs.Producer(args.stream, region=REGION, endpoint_url=args.endpoint) as producer:
        start()
        handles = []
        append = handles.append
        put = producer.put
        for i in range(args.records):
            append(put(str(i), DATA))
        producer.flush()
        put = sum(1 for handle in handles if handle.result().sequence_number)
        stop()
        return put


def run_put_many(args) -> int:
    import kinesis_rs

    with kinesis_rs.Producer(args.stream, region=REGION, endpoint_url=args.endpoint) as producer:
        start()
        handles = []
        for first in range(0, args.records, CHUNK):
            last = min(first + CHUNK, args.records)
            handles.extend(producer.put_many([(str(i), DATA) for i in range(first, last)]))
        producer.flush()
        put = sum(1 for handle in handles if handle.result().sequence_number)
        stop()
        return put


def run_put_dropped(args) -> int:
    import kinesis_rs

    failed = []
    with kinesis_rs.Producer(args.stream, region=REGION, endpoint_url=args.endpoint) as producer:
        start()
        put = producer.put
        for i in range(args.records):
            put(str(i), DATA)
        producer.flush()
        stop()
        # flush waited until every record resolved; nobody holds a handle to check, so count
        # what the producer still holds.
        failed.append(producer.outstanding_records)
    return args.records if failed == [0] else 0


def run_boto3(args) -> int:
    import boto3

    client = boto3.client("kinesis", region_name=REGION, endpoint_url=args.endpoint)
    start()
    put = 0
    for first in range(0, args.records, 500):
        last = min(first + 500, args.records)
        answer = client.put_records(
            StreamName=args.stream,
            Records=[{"Data": DATA, "PartitionKey": str(i)} for i in range(first, last)],
        )
        put += sum(1 for entry in answer["Records"] if "SequenceNumber" in entry)
    stop()
    return put


def run_aiokpl(args) -> int:
    from aiokpl.config import Config
    from aiokpl.producer import Producer

    async def main() -> int:
        config = Config(
            region=REGION,
            endpoint_url=args.endpoint,
            aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        )
        async with Producer(config) as producer:
            start()
            outcomes = []
            for i in range(args.records):
                outcomes.append(
                    await producer.put_record(stream=args.stream, partition_key=str(i), data=DATA)
                )
            await producer.flush()
            put = 0
            for outcome in outcomes:
                result = await outcome.wait()
                put += 1 if result.success else 0
            stop()
            return put

    return asyncio.run(main())


MODES = {
    "put": run_put,
    "put_many": run_put_many,
    "put_dropped": run_put_dropped,
    "boto3": run_boto3,
    "aiokpl": run_aiokpl,
}

_marks: list[tuple[float, float]] = []


def start() -> None:
    """Called by a mode once its producer is built: the clock and the CPU count start here."""
    _marks.append((time.perf_counter(), cpu_seconds()))


def stop() -> None:
    """Called by a mode once every outcome is checked."""
    _marks.append((time.perf_counter(), cpu_seconds()))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--stream", default="bench")
    args = parser.parse_args()
    put = MODES[args.mode](args)
    (start_wall, start_cpu), (end_wall, end_cpu) = _marks
    seconds = end_wall - start_wall
    report = {
        "mode": args.mode,
        "records": args.records,
        "put": put,
        "seconds": round(seconds, 3),
        "rps": round(args.records / seconds),
        "cpu_us_per_record": round((end_cpu - start_cpu) * 1e6 / args.records, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "payload_mb": round(args.records * len(DATA) / 1e6, 1),
    }
    print(json.dumps(report), flush=True)
    if put != args.records:
        print(f"{args.mode}: only {put} of {args.records} records were put", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
