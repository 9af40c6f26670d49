"""PutHandle and put_many against kinesalite: results, failures carrying the record, callbacks,
asyncio, timeouts; and a producer or scheduler without credentials."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import kinesis_rs
from conftest import REGION, closed_port_url, create_stream, kinesis, producer


def stored_records(stream: str) -> list[dict]:
    records = []
    for shard in kinesis("ListShards", {"StreamName": stream})["Shards"]:
        iterator = kinesis("GetShardIterator", {"StreamName": stream, "ShardId": shard["ShardId"],
                                                "ShardIteratorType": "TRIM_HORIZON"})
        records += kinesis("GetRecords", {"ShardIterator": iterator["ShardIterator"]})["Records"]
    return records


def test_put_many_returns_a_handle_per_record_in_order(kinesis_endpoint):
    stream = create_stream(shards=2)
    with producer(stream, kinesis_endpoint, RecordMaxBufferedTime=50) as p:
        handles = p.put_many(
            [(f"key-{i}", f"value-{i}".encode()) for i in range(300)]
            + [("any", b"to shard 0", "0"), ("other", bytearray(b"no explicit key"), None)]
        )
        assert isinstance(handles, list) and len(handles) == 302
        assert all(isinstance(h, kinesis_rs.PutHandle) for h in handles)
        results = [h.result(timeout=30) for h in handles]
        # A generator is an iterable too.
        more = p.put_many((f"gen-{i}", b"x") for i in range(5))
        assert [h.result(timeout=30).shard_id.startswith("shardId-") for h in more] == [True] * 5
        assert p.put_many([]) == []
    assert results[300].shard_id == "shardId-000000000000"
    # Aggregated per shard: every record has its own place.
    places = {(r.shard_id, r.sequence_number, r.sub_sequence_number) for r in results}
    assert len(places) == 302
    with pytest.raises(kinesis_rs.ProducerClosed):
        p.put_many([])


def test_put_many_checks_every_record_first_and_puts_nothing_when_one_is_bad(kinesis_endpoint):
    stream = create_stream(shards=1)
    p = producer(stream, kinesis_endpoint, RecordMaxBufferedTime=50)
    good = [(f"k{i}", b"v") for i in range(10)]
    with pytest.raises(ValueError, match=r"put_many: item 10: .*partition key.*nothing was put"):
        p.put_many(good + [("", b"empty key")])
    with pytest.raises(ValueError, match=r"item 3: .*1 MiB|item 3: .*data"):
        p.put_many(good[:3] + [("k", b"x" * (1024 * 1024 + 1))])
    with pytest.raises(ValueError, match=r"item 1: .*explicit hash key"):
        p.put_many([("k", b"v"), ("k", b"v", "not a number")])
    with pytest.raises(TypeError, match=r"item 2 must be a \(partition_key, data"):
        p.put_many(good[:2] + [["k", b"list, not tuple"]])
    with pytest.raises(TypeError, match=r"item 0 must be"):
        p.put_many([("only a key",)])
    with pytest.raises(TypeError, match=r"item 1: .*data must be bytes"):
        p.put_many([("k", b"v"), ("k", 42)])
    with pytest.raises(TypeError, match=r"item 0: the partition key must be a str"):
        p.put_many([(7, b"v")])
    p.flush()
    assert p.outstanding_records == 0
    p.close()
    assert stored_records(stream) == []
    with pytest.raises(kinesis_rs.ProducerClosed):
        p.put_many(good)


def test_a_handle_reports_done_and_times_out_like_a_future(kinesis_endpoint):
    stream = create_stream(shards=1)
    p = producer(stream, kinesis_endpoint, RecordMaxBufferedTime=60_000)
    handle = p.put("k", b"v")
    assert not handle.done() and handle.running() and not handle.cancelled()
    assert handle.cancel() is False
    assert "pending" in repr(handle)
    with pytest.raises(TimeoutError):
        handle.result(timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        handle.exception(timeout=0.2)
    assert time.monotonic() - started >= 0.2
    # A result() blocked in one thread returns once another thread flushes.
    got = []
    waiter = threading.Thread(target=lambda: got.append(handle.result(timeout=30)))
    waiter.start()
    time.sleep(0.1)
    assert waiter.is_alive() and not got
    p.flush()
    waiter.join(timeout=30)
    assert got and got[0].sequence_number.isdigit()
    assert handle.done() and not handle.running() and handle.exception() is None
    assert handle.result().sequence_number == got[0].sequence_number
    assert "put: shard_id=" in repr(handle)
    p.close()


def test_done_callbacks_run_once_each_with_the_handle(kinesis_endpoint):
    stream = create_stream(shards=1)
    p = producer(stream, kinesis_endpoint, RecordMaxBufferedTime=60_000)
    handles = [p.put(f"k{i}", b"v") for i in range(200)]
    seen: list[tuple[int, str, str]] = []
    main = threading.current_thread().name

    def record(i):
        def callback(handle):
            seen.append((i, handle.result().sequence_number, threading.current_thread().name))
        return callback

    def broken(handle):
        raise RuntimeError("a callback that fails")

    for i, handle in enumerate(handles):
        if i == 0:
            handle.add_done_callback(broken)  # reported, and the others still run
        handle.add_done_callback(record(i))
    assert seen == []
    reported = []
    hook, sys.unraisablehook = sys.unraisablehook, reported.append
    try:
        p.flush()  # returns once the callbacks have run
    finally:
        sys.unraisablehook = hook
    assert [str(r.exc_value) for r in reported] == ["a callback that fails"]
    assert sorted(i for i, _, _ in seen) == list(range(200))
    assert all(thread != main for _, _, thread in seen)
    assert [s for _, s, _ in sorted(seen)] == [h.result().sequence_number for h in handles]
    # Added once resolved: called at once, in this thread.
    late = []
    handles[0].add_done_callback(lambda h: late.append(threading.current_thread().name))
    assert late == [main]
    p.close()


def test_a_failed_handle_gives_the_record_back_to_result_exception_callbacks_and_await():
    p = kinesis_rs.Producer("py-blackholed", region=REGION, endpoint_url=closed_port_url(),
                            RecordTtl=1000, MinBackoff=50, MaxBackoff=100)
    handles = p.put_many([("device-1", b"reading one", "42"), ("device-2", b"reading two")])
    called = []
    handles[1].add_done_callback(lambda h: called.append(type(h.exception()).__name__))

    async def awaited():
        with pytest.raises(kinesis_rs.RecordExpired) as raised:
            await handles[0]
        return raised.value

    error = asyncio.run(awaited())
    assert error.record == ("device-1", b"reading one", "42")
    assert all(a.error_code == "ConnectionError" for a in error.attempts)
    # Messages are the error's display chain, short: never the SDK's Debug dump.
    assert all(len(a.error_message) <= 300 and "DispatchFailure(" not in a.error_message
               for a in error.attempts), [a.error_message for a in error.attempts]
    p.flush()
    assert called == ["RecordExpired"]
    second = handles[1].exception()
    assert second.partition_key == "device-2" and second.data == b"reading two"
    with pytest.raises(kinesis_rs.RecordExpired, match="RecordTtl"):
        handles[1].result()
    assert "failed: record not put within RecordTtl" in repr(handles[1])
    p.close()


def test_handles_are_awaitable_and_put_async_stays(kinesis_endpoint):
    stream = create_stream(shards=1)

    async def main():
        with producer(stream, kinesis_endpoint, RecordMaxBufferedTime=10) as p:
            direct = await p.put("k", b"awaited handle")
            many = await asyncio.gather(*p.put_many([(f"k{i}", b"v") for i in range(20)]))
            old_style = p.put_async("k", b"put_async")
            assert isinstance(old_style, asyncio.Future)
            return direct, many, await old_style

    direct, many, old_style = asyncio.run(main())
    assert direct.shard_id == old_style.shard_id == "shardId-000000000000"
    assert len(many) == 20 and all(r.sequence_number.isdigit() for r in many)
    with pytest.raises(RuntimeError, match="no running event loop"):
        producer(stream, kinesis_endpoint).put_async("k", b"outside a loop")


def _without_credentials() -> dict[str, str]:
    """The environment of a machine with no AWS credentials: no variables, no profile files, and
    an instance-metadata endpoint that refuses connections (as off EC2)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = "/nonexistent"
    env["AWS_CONFIG_FILE"] = "/nonexistent/config"
    env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/credentials"
    env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = closed_port_url()
    return env


def test_without_credentials_the_producer_and_scheduler_fail_at_once(kinesis_endpoint,
                                                                       dynamodb_endpoint):
    stream = create_stream(shards=1)
    script = textwrap.dedent(
        f"""
        import json, time
        import kinesis_rs
        report = {{}}
        started = time.monotonic()
        try:
            kinesis_rs.Producer({stream!r}, region={REGION!r}, endpoint_url={kinesis_endpoint!r})
        except kinesis_rs.CredentialsError as error:
            report["producer"] = [str(error), time.monotonic() - started]
        started = time.monotonic()
        try:
            kinesis_rs.Scheduler({stream!r}, "py-no-credentials", object, region={REGION!r},
                                 endpoint_url={kinesis_endpoint!r},
                                 dynamodb_endpoint_url={dynamodb_endpoint!r})
        except kinesis_rs.CredentialsError as error:
            report["scheduler"] = [str(error), time.monotonic() - started]
        # Told not to check: it starts, and each record fails with CredentialsError attempts.
        p = kinesis_rs.Producer({stream!r}, region={REGION!r}, endpoint_url={kinesis_endpoint!r},
                                verify_credentials=False, RecordTtl=1500, MinBackoff=50,
                                MaxBackoff=100)
        error = p.put("k", b"v").exception(timeout=30)
        report["attempts"] = [[a.error_code, a.error_message] for a in error.attempts]
        report["record"] = [error.record.partition_key, error.record.data.decode()]
        p.close()
        print(json.dumps(report))
        """
    )
    env = _without_credentials()
    env["KINESIS_RS_LOG"] = "kinesis_producer=warn"
    run = subprocess.run([sys.executable, "-c", script], env=env, timeout=60,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    for which in ("producer", "scheduler"):
        message, seconds = report[which]
        assert "credentials" in message.lower(), message
        assert seconds < 5, (which, seconds)
        assert len(message) < 500, message
    assert report["record"] == ["k", "v"]
    codes = {code for code, _ in report["attempts"]}
    assert codes == {"CredentialsError"}, report["attempts"]
    assert all(len(message) <= 300 for _, message in report["attempts"]), report["attempts"]
    # Logged once for the outage, not once per request or record.
    assert run.stderr.count("no credentials to sign PutRecords") == 1, run.stderr
