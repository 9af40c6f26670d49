#!/usr/bin/env python3
"""Python half of the aggregation benchmark, using aws-kinesis-agg 1.2.3.

Usage: .local/venv/bin/python scripts/bench_agg_python.py INPUT_FILE

INPUT_FILE (see scripts/make_bench_input.py) holds N user records:
    [u8 partition_key_len][partition_key UTF-8][u32 LE data_len][data]

1. Loads all records into memory (partition keys decoded to str, the usual
   way of calling the package; not timed).
2. Times aggregating all of them with one RecordAggregator(max_size=51200)
   (the KPL default; the package's own default is 1 MiB): add_user_record()
   for each, collecting every emitted AggRecord plus the final
   clear_and_get(), and serialising each with get_contents() (the bytes one
   would send to PutRecords).
3. Times deaggregating all produced aggregated records with
   deaggregator.deaggregate_records(), fed the Lambda/GetRecords event shape
   the package expects ({"kinesis": {..., "data": base64}}; building those
   dicts and base64-encoding the blobs is not timed); the package
   materialises each user record as a dict with base64 data.  The count
   must equal N (exit status 1 otherwise).

The last line printed is exactly:
    python_aggregate_rps=<int> python_deaggregate_rps=<int>
(user records per second).  Details go to stderr.
"""

import base64
import struct
import sys
import time

SEQUENCE_NUMBER = "49590338271490256608559692538361571095921575989136588898"
MAX_SIZE = 51200


def load(path):
    with open(path, "rb") as f:
        buf = f.read()
    recs = []
    pos, end = 0, len(buf)
    unpack_u32 = struct.Struct("<I").unpack_from
    while pos < end:
        kl = buf[pos]
        pos += 1
        pk = buf[pos:pos + kl].decode("utf-8")
        pos += kl
        (dl,) = unpack_u32(buf, pos)
        pos += 4
        data = buf[pos:pos + dl]
        pos += dl
        if pos > end:
            sys.exit(f"{path}: truncated record at end of file")
        recs.append((pk, data))
    return recs


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    from aws_kinesis_agg.aggregator import RecordAggregator
    from aws_kinesis_agg.deaggregator import deaggregate_records
    import google.protobuf
    from google.protobuf.internal import api_implementation

    t = time.perf_counter()
    recs = load(sys.argv[1])
    n = len(recs)
    print(f"loaded {n} records in {time.perf_counter() - t:.2f}s "
          f"(protobuf {google.protobuf.__version__}, backend {api_implementation.Type()})", file=sys.stderr)
    if n == 0:
        sys.exit("no records")

    # ---- aggregate (timed) ----
    t0 = time.perf_counter()
    agg = RecordAggregator(max_size=MAX_SIZE)
    emitted = []
    add = agg.add_user_record
    for pk, data in recs:
        r = add(pk, data)
        if r is not None:
            emitted.append(r)
    r = agg.clear_and_get()
    if r is not None:
        emitted.append(r)
    blobs = [r.get_contents() for r in emitted]  # (pk, ehk, bytes)
    t_agg = time.perf_counter() - t0

    total_users = sum(r.get_num_user_records() for r in emitted)
    if total_users != n:
        sys.exit(f"aggregation lost records: {n} in, {total_users} aggregated")
    total_bytes = sum(len(b) for _, _, b in blobs)

    # ---- deaggregate (input prep not timed) ----
    events = [{"kinesis": {"kinesisSchemaVersion": "1.0", "sequenceNumber": SEQUENCE_NUMBER,
                           "approximateArrivalTimestamp": 1700000000.0, "partitionKey": pk,
                           "data": base64.b64encode(b).decode("ascii")}}
              for pk, _, b in blobs]
    del emitted
    t1 = time.perf_counter()
    out = deaggregate_records(events)
    t_deagg = time.perf_counter() - t1

    if len(out) != n:
        sys.exit(f"deaggregation count mismatch: expected {n}, got {len(out)}")
    # spot-check content (not timed)
    for i in (0, n // 2, n - 1):
        k = out[i]["kinesis"]
        if k["partitionKey"] != recs[i][0] or base64.b64decode(k["data"]) != recs[i][1]:
            sys.exit(f"deaggregated record {i} differs from input")

    print(f"aggregate: {n} user records -> {len(blobs)} aggregated records "
          f"({total_bytes} bytes, avg {total_bytes / len(blobs):.0f} B) in {t_agg:.3f}s", file=sys.stderr)
    print(f"deaggregate: {len(blobs)} aggregated records -> {len(out)} user records in {t_deagg:.3f}s",
          file=sys.stderr)
    print(f"python_aggregate_rps={int(n / t_agg)} python_deaggregate_rps={int(n / t_deagg)}")


if __name__ == "__main__":
    main()
