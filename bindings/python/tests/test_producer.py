"""The producer against kinesalite: results, errors, context manager, asyncio, GIL release."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import kinesis_rs
from conftest import REGION, closed_port_url, create_stream, kinesis, producer


def test_put_returns_a_handle_of_the_records_place(kinesis_endpoint):
    stream = create_stream(shards=2)
    with producer(stream, kinesis_endpoint, RecordMaxBufferedTime=50) as p:
        futures = [p.put(f"key-{i}", f"value-{i}".encode()) for i in range(20)]
        explicit = p.put("any", b"to shard 0", explicit_hash_key="0")
        assert all(isinstance(f, kinesis_rs.PutHandle) for f in futures)
        # Code that needs a concurrent.futures.Future asks for one.
        as_futures = [f.to_future() for f in futures]
        done, not_done = concurrent.futures.wait(as_futures, timeout=30)
        assert len(done) == 20 and not not_done
        results = [f.result(timeout=30) for f in futures]
        assert [f.result().sequence_number for f in as_futures] == [
            r.sequence_number for r in results
        ]
        low = explicit.result(timeout=30)
    assert low.shard_id == "shardId-000000000000"  # hash key 0 is in the first shard's range
    for result in results + [low]:
        assert isinstance(result, kinesis_rs.PutResult)
        assert result.shard_id in ("shardId-000000000000", "shardId-000000000001")
        assert result.sequence_number.isdigit()
        assert result.successful
        attempts = result.attempts
        assert len(attempts) >= 1 and attempts[-1].successful and attempts[-1].error_code is None
        as_dict = result.to_dict()
        assert as_dict["shard_id"] == result.shard_id
        assert as_dict["sequence_number"] == result.sequence_number
        assert "sub_sequence_number" in as_dict and "attempts" in as_dict
    # Aggregated: records of one shard share a Kinesis record and have distinct sub-sequence numbers.
    places = {(r.shard_id, r.sequence_number, r.sub_sequence_number) for r in results}
    assert len(places) == len(results)
    # What kinesalite stored is what the results say.
    shard_of = {r.shard_id for r in results}
    stored = 0
    for shard in shard_of:
        iterator = kinesis("GetShardIterator", {"StreamName": stream, "ShardId": shard,
                                                "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
        records = kinesis("GetRecords", {"ShardIterator": iterator})["Records"]
        sequence_numbers = {r["SequenceNumber"] for r in records}
        assert {r.sequence_number for r in results if r.shard_id == shard} <= sequence_numbers
        stored += len(records)
    assert stored >= 1


@pytest.mark.parametrize(
    "key, data, explicit_hash_key, message",
    [
        ("", b"x", None, "partition key is empty"),
        ("k" * 257, b"x", None, "257 characters"),
        ("key", b"x", "abc", "explicit hash key"),
        ("key", b"x", str(2**128), "explicit hash key"),
        ("key", b"x", "-1", "explicit hash key"),
        ("key", b"x" * (1024 * 1024 + 1), None, "1048577 bytes"),
    ],
)
def test_invalid_records_raise_value_error(kinesis_endpoint, key, data, explicit_hash_key, message):
    stream = create_stream(shards=1)
    with producer(stream, kinesis_endpoint) as p:
        with pytest.raises(ValueError, match=message):
            p.put(key, data, explicit_hash_key=explicit_hash_key)
        assert p.outstanding_records == 0
        # The producer still works after a refused record.
        assert p.put("key", b"fine").result(timeout=30).sequence_number


def test_data_may_be_bytes_like_or_str(kinesis_endpoint):
    stream = create_stream(shards=1)
    with producer(stream, kinesis_endpoint, AggregationEnabled=False) as p:
        futures = [p.put("k", bytearray(b"ba")), p.put("k", memoryview(b"mv")), p.put("k", "text")]
        with pytest.raises(TypeError, match="data must be"):
            p.put("k", 42)
        results = [f.result(timeout=30) for f in futures]
    iterator = kinesis("GetShardIterator", {"StreamName": stream, "ShardId": results[0].shard_id,
                                            "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
    data = sorted(base64.b64decode(r["Data"]) for r in kinesis("GetRecords", {"ShardIterator": iterator})["Records"])
    assert data == [b"ba", b"mv", b"text"]


def test_bad_options_raise(kinesis_endpoint):
    stream = create_stream(shards=1)
    with pytest.raises(ValueError, match="unknown producer option"):
        producer(stream, kinesis_endpoint, RecordTTL=100)
    with pytest.raises(ValueError, match="RecordTtl"):
        producer(stream, kinesis_endpoint, RecordTtl="ten")
    with pytest.raises(ValueError, match="CollectionMaxCount"):
        producer(stream, kinesis_endpoint, CollectionMaxCount=501)
    with pytest.raises(TypeError, match="RecordTtl"):
        producer(stream, kinesis_endpoint, RecordTtl=[1])
    # Booleans and numbers map onto the KPL's strings.
    producer(stream, kinesis_endpoint, AggregationEnabled=False, RecordTtl=1000, RateLimit=100.0).close()


def test_missing_stream_raises_stream_not_found(kinesis_endpoint):
    with pytest.raises(kinesis_rs.StreamNotFound, match="not found") as raised:
        producer("py-no-such-stream", kinesis_endpoint)
    assert raised.value.stream_name == "py-no-such-stream"
    assert isinstance(raised.value, LookupError) and isinstance(raised.value, kinesis_rs.KinesisError)


def test_expired_record_comes_back_and_flush_releases_the_gil():
    p = kinesis_rs.Producer("py-blackholed", region=REGION, endpoint_url=closed_port_url(),
                            RecordTtl=1500, MinBackoff=50, MaxBackoff=200)
    future = p.put("device-7", b"lost reading", explicit_hash_key="42")
    ticks = 0
    running = True

    def count():
        nonlocal ticks
        while running:
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    started = time.monotonic()
    p.flush()  # returns once the record has expired; other Python threads run meanwhile
    elapsed = time.monotonic() - started
    running = False
    counter.join()
    assert future.done()
    assert elapsed >= 1.0
    # The other thread ran all along: ~1 tick per ms, far more than a GIL-holding flush allows.
    assert ticks > 50 * elapsed, (ticks, elapsed)
    error = future.exception()
    assert isinstance(error, kinesis_rs.RecordExpired)
    assert isinstance(error, kinesis_rs.PutError) and isinstance(error, kinesis_rs.KinesisError)
    with pytest.raises(kinesis_rs.RecordExpired, match="RecordTtl"):
        future.result()
    assert error.partition_key == "device-7"
    assert error.data == b"lost reading"
    assert error.explicit_hash_key == "42"
    assert error.record == ("device-7", b"lost reading", "42")
    assert len(error.attempts) >= 2
    assert all(not a.successful and a.error_code for a in error.attempts)
    p.close()


def test_context_manager_closes_and_resolves_every_future(kinesis_endpoint):
    stream = create_stream(shards=1)
    # A long buffering time: only close() sends these records.
    with producer(stream, kinesis_endpoint, RecordMaxBufferedTime=60_000) as p:
        futures = [p.put(f"k{i}", b"v") for i in range(100)]
        assert not any(f.done() for f in futures)
        assert not p.closed
    assert p.closed
    assert all(f.done() for f in futures)
    assert all(f.result().sequence_number for f in futures)
    with pytest.raises(kinesis_rs.ProducerClosed):
        p.put("k", b"after close")
    p.close()  # idempotent
    p.flush()  # a no-op once closed


def test_context_manager_closes_on_exception(kinesis_endpoint):
    stream = create_stream(shards=1)
    with pytest.raises(RuntimeError, match="boom"):
        with producer(stream, kinesis_endpoint, RecordMaxBufferedTime=60_000) as p:
            future = p.put("k", b"v")
            raise RuntimeError("boom")
    assert p.closed and future.result(timeout=0).sequence_number


def test_flush_resolves_every_future(kinesis_endpoint):
    stream = create_stream(shards=2)
    p = producer(stream, kinesis_endpoint, RecordMaxBufferedTime=60_000)
    futures = [p.put(f"k{i}", b"v") for i in range(1000)]
    p.flush()
    assert all(f.done() and f.exception() is None for f in futures)
    assert p.outstanding_records == 0
    p.close()


def test_put_async(kinesis_endpoint):
    stream = create_stream(shards=1)

    async def main():
        with producer(stream, kinesis_endpoint, RecordMaxBufferedTime=10) as p:
            results = await asyncio.gather(*(p.put_async(f"k{i}", b"v") for i in range(50)))
        return results

    results = asyncio.run(main())
    assert len(results) == 50 and all(r.shard_id == "shardId-000000000000" for r in results)


def test_records_put_without_close_are_delivered_when_the_interpreter_exits(kinesis_endpoint):
    stream = create_stream(shards=1)
    # A long buffering time: only the exit hook sends these. The script's own exit handler is
    # registered before kinesis_rs is imported, so it runs after kinesis_rs's (LIFO) and sees
    # whether every future was resolved by then.
    script = textwrap.dedent(
        f"""
        import atexit
        futures = []
        atexit.register(lambda: print("resolved", sum(f.done() and f.exception() is None
                                                      for f in futures), flush=True))
        import kinesis_rs
        p = kinesis_rs.Producer({stream!r}, region={REGION!r}, endpoint_url={kinesis_endpoint!r},
                                RecordMaxBufferedTime=60_000, AggregationEnabled=False)
        futures.extend(p.put(f"k{{i}}", f"record {{i}}") for i in range(200))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], check=True, timeout=60,
                         capture_output=True, text=True)
    assert run.stdout.split() == ["resolved", "200"], run.stdout + run.stderr
    shard = kinesis("ListShards", {"StreamName": stream})["Shards"][0]["ShardId"]
    iterator = kinesis("GetShardIterator", {"StreamName": stream, "ShardId": shard,
                                            "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
    stored = kinesis("GetRecords", {"ShardIterator": iterator})["Records"]
    assert sorted(base64.b64decode(r["Data"]) for r in stored) == sorted(
        f"record {i}".encode() for i in range(200)
    )
