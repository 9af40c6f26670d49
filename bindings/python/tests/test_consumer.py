"""The consumer: Python processors with amazon-kclpy v3's interface, against kinesalite (stream)
and DynamoDB Local (lease table)."""

from __future__ import annotations

import base64
import datetime
import os
import signal
import threading
import time

import pytest

import kinesis_rs
from conftest import REGION, create_stream, dynamodb, endpoint, leases, shard_ids, unique, wait_for
from kinesis_rs import kcl
from kinesis_rs.v3 import processor


def scheduler(stream, app, factory, kinesis_endpoint, dynamodb_endpoint, **options):
    options.setdefault("idle_time_between_reads_millis", 200)
    options.setdefault("failover_time_millis", 3000)
    return kinesis_rs.Scheduler(
        stream, app, factory, region=REGION, endpoint_url=kinesis_endpoint,
        dynamodb_endpoint_url=dynamodb_endpoint, **options,
    )


class Shared:
    """What the processors of one worker saw, by shard."""

    def __init__(self):
        self.lock = threading.Lock()
        self.records: dict[str, list] = {}
        self.initialized: dict[str, tuple] = {}
        self.ended: dict[str, str] = {}
        self.checkpoints: dict[str, tuple] = {}
        self.checkpointers: dict[str, object] = {}

    def count(self, shard):
        with self.lock:
            return len(self.records.get(shard, ()))


class Recorder(processor.RecordProcessorBase):
    """Keeps every record; when a shard has delivered `checkpoint_after[shard]` records,
    checkpoints at the middle one. Never checkpoints at shutdown."""

    def __init__(self, shared: Shared, checkpoint_after: dict[str, int] | None = None):
        self.shared = shared
        self.checkpoint_after = checkpoint_after or {}
        self.shard = None

    def initialize(self, initialize_input):
        assert initialize_input.action == "initialize"
        self.shard = initialize_input.shard_id
        with self.shared.lock:
            self.shared.initialized[self.shard] = (
                initialize_input.sequence_number, initialize_input.sub_sequence_number)

    def process_records(self, process_records_input):
        records = process_records_input.records
        with self.shared.lock:
            seen = self.shared.records.setdefault(self.shard, [])
            for r in records:
                seen.append((r.sequence_number, r.sub_sequence_number, r.partition_key, r.binary_data))
                # The kclpy shape: data is base64 of the bytes; the arrival time a datetime.
                assert base64.b64decode(r.data) == r.binary_data
                assert r.get("partitionKey") == r.partition_key and r["sequenceNumber"] == r.sequence_number
                assert isinstance(r.approximate_arrival_timestamp, datetime.datetime)
            self.shared.checkpointers[self.shard] = process_records_input.checkpointer
            want = self.checkpoint_after.get(self.shard)
            middle = seen[len(seen) // 2] if want is not None and len(seen) >= want else None
        assert process_records_input.millis_behind_latest is None or process_records_input.millis_behind_latest >= 0
        if middle is not None and self.shard not in self.shared.checkpoints:
            process_records_input.checkpointer.checkpoint(middle[0], middle[1])
            with self.shared.lock:
                self.shared.checkpoints[self.shard] = (middle[0], middle[1])

    def lease_lost(self, lease_lost_input):
        with self.shared.lock:
            self.shared.ended[self.shard] = lease_lost_input.action

    def shard_ended(self, shard_ended_input):
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input):
        with self.shared.lock:
            self.shared.ended[self.shard] = shutdown_requested_input.action


def test_put_10000_consume_checkpoint_and_resume_after_it(kinesis_endpoint, dynamodb_endpoint):
    stream, app = create_stream(shards=2), unique("app")
    shards = shard_ids(stream)

    # Put 10,000 records from Python; every one is acknowledged with its place.
    sent = {}
    with kinesis_rs.Producer(stream, region=REGION, endpoint_url=kinesis_endpoint) as producer:
        futures = {i: producer.put(f"key-{i % 997}", f"record-{i}".encode()) for i in range(10_000)}
    for i, future in futures.items():
        result = future.result(timeout=0)
        sent[f"record-{i}".encode()] = (result.shard_id, result.sequence_number, result.sub_sequence_number or 0)
    assert len(sent) == 10_000
    per_shard = {shard: sum(1 for place in sent.values() if place[0] == shard) for shard in shards}
    assert all(count > 0 for count in per_shard.values()), per_shard

    # First worker: reads everything, checkpoints each shard at its middle record, shuts down.
    first = Shared()
    worker = scheduler(stream, app, lambda: Recorder(first, per_shard), kinesis_endpoint,
                       dynamodb_endpoint, worker_id="worker-a")
    worker.start()
    try:
        wait_for(lambda: len(first.checkpoints) == len(shards), 60, "both shards read and checkpointed")
    finally:
        worker.shutdown()
    assert not worker.running
    assert first.initialized == {shard: ("TRIM_HORIZON", 0) for shard in shards}
    assert first.ended == {shard: "shutdownRequested" for shard in shards}
    received = {}
    for shard, records in first.records.items():
        for sequence_number, sub, key, data in records:
            assert data not in received, f"{data!r} delivered twice"
            received[data] = (shard, sequence_number, sub)
    assert received == sent  # every record, once, where its put result said
    table = leases(app)
    for shard in shards:
        sequence_number, sub = first.checkpoints[shard]
        assert table[shard]["checkpoint"] == sequence_number
        assert int(table[shard]["checkpointSubSequenceNumber"]) == sub
        assert "leaseOwner" not in table[shard]  # released at shutdown

    # Second worker, same application: starts after each checkpoint, delivers exactly the rest.
    second = Shared()
    expected = {}
    for shard in shards:
        records = first.records[shard]
        middle = records.index(next(r for r in records if (r[0], r[1]) == first.checkpoints[shard]))
        expected[shard] = records[middle + 1:]
    worker = scheduler(stream, app, lambda: Recorder(second), kinesis_endpoint, dynamodb_endpoint,
                       worker_id="worker-b")
    with worker:
        wait_for(lambda: all(second.count(s) >= len(expected[s]) for s in shards), 60,
                 "the records after the checkpoints")
        time.sleep(1.5)  # several more polls: nothing else may arrive
    assert second.initialized == {shard: first.checkpoints[shard] for shard in shards}
    for shard in shards:
        assert second.records[shard] == expected[shard], shard
    assert sum(len(v) for v in second.records.values()) == sum(len(v) for v in expected.values()) > 4_000


def test_fan_out_delivers_every_record_once_in_order(dynamodb_endpoint):
    # kinesis-mock: the local server with SubscribeToShard.
    server = "KINESIS_MOCK_ENDPOINT"
    kinesis_endpoint = endpoint(server)
    stream, app = create_stream(shards=2, server=server), unique("app")
    shards = shard_ids(stream, server)
    with kinesis_rs.Producer(stream, region=REGION, endpoint_url=kinesis_endpoint) as producer:
        futures = [producer.put(f"key-{i % 31}", f"record-{i}".encode()) for i in range(500)]
    places = {f"record-{i}".encode(): f.result(timeout=0) for i, f in enumerate(futures)}
    shared = Shared()
    worker = scheduler(stream, app, lambda: Recorder(shared), kinesis_endpoint, dynamodb_endpoint,
                       retrieval_mode="FANOUT")
    with worker:
        wait_for(lambda: sum(shared.count(s) for s in shards) >= 500, 60, "500 records by fan-out")
    received = [r for shard in shards for r in shared.records.get(shard, [])]
    assert sorted(data for _, _, _, data in received) == sorted(places)
    for shard in shards:
        positions = [(int(seq), sub) for seq, sub, _, _ in shared.records.get(shard, [])]
        assert positions == sorted(positions), f"{shard} in order"
    for seq, sub, _, data in received:
        assert places[data].sequence_number == seq


def test_checkpoint_errors_carry_the_kcl_exception_name(kinesis_endpoint, dynamodb_endpoint):
    stream, app = create_stream(shards=1), unique("app")
    (shard,) = shard_ids(stream)
    with kinesis_rs.Producer(stream, region=REGION, endpoint_url=kinesis_endpoint,
                             AggregationEnabled=False) as producer:
        placed = [producer.put("k", f"v{i}".encode()) for i in range(3)]
    last = placed[-1].result().sequence_number
    shared = Shared()
    worker = scheduler(stream, app, lambda: Recorder(shared), kinesis_endpoint, dynamodb_endpoint,
                       failover_time_millis=60_000)
    worker.start()
    try:
        wait_for(lambda: shared.count(shard) == 3, 60, "the three records")
        checkpointer = shared.checkpointers[shard]
        assert isinstance(checkpointer, kcl.Checkpointer) and checkpointer.shard_id == shard

        # Beyond the last delivered record: InvalidStateException.
        with pytest.raises(kcl.CheckpointError) as raised:
            checkpointer.checkpoint(str(int(last) + 1))
        assert raised.value.value == "InvalidStateException"
        # Not a sequence number.
        with pytest.raises(kcl.CheckpointError) as raised:
            checkpointer.checkpoint("latest-please")
        assert raised.value.value == "IllegalArgumentException"
        # Fine: at the last record (an int is accepted as well as a str, as kclpy apps pass).
        checkpointer.checkpoint(int(last))
        assert leases(app)[shard]["checkpoint"] == last

        # Another worker takes the lease (owner and counter change, as the KCL's take does):
        # this worker is now a zombie, and its checkpoint must fail with ShutdownException.
        dynamodb("UpdateItem", {
            "TableName": app, "Key": {"leaseKey": {"S": shard}},
            "UpdateExpression": "SET leaseOwner = :thief ADD leaseCounter :one",
            "ExpressionAttributeValues": {":thief": {"S": "thief"}, ":one": {"N": "1"}},
        })
        with pytest.raises(kcl.CheckpointError) as raised:
            checkpointer.checkpoint()
        assert raised.value.value == "ShutdownException"
        assert "ShutdownException" in str(raised.value)
        assert leases(app)[shard]["leaseOwner"] == "thief"
        assert leases(app)[shard]["checkpoint"] == last
        # The worker finds out at its next renewal and tells the processor.
        wait_for(lambda: shared.ended.get(shard) == "leaseLost", 30, "lease_lost")
    finally:
        worker.shutdown()


class Flaky(processor.RecordProcessorBase):
    """Raises on its first batch; records what it processed afterwards."""

    raised = 0

    def __init__(self, shared):
        self.shared = shared

    def initialize(self, initialize_input):
        self.shard = initialize_input.shard_id

    def process_records(self, process_records_input):
        if Flaky.raised == 0:
            Flaky.raised += 1
            raise RuntimeError("a processing error (expected by the test)")
        with self.shared.lock:
            self.shared.records.setdefault(self.shard, []).extend(
                r.binary_data for r in process_records_input.records)

    def lease_lost(self, lease_lost_input):
        pass

    def shard_ended(self, shard_ended_input):
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input):
        pass


def test_a_batch_whose_processing_raised_is_delivered_again(kinesis_endpoint, dynamodb_endpoint):
    stream, app = create_stream(shards=1), unique("app")
    (shard,) = shard_ids(stream)
    with kinesis_rs.Producer(stream, region=REGION, endpoint_url=kinesis_endpoint) as producer:
        for i in range(10):
            producer.put(f"k{i}", f"v{i}".encode())
    shared = Shared()
    with scheduler(stream, app, lambda: Flaky(shared), kinesis_endpoint, dynamodb_endpoint):
        wait_for(lambda: shared.count(shard) >= 10, 60, "the batch, again")
    assert Flaky.raised == 1
    assert sorted(shared.records[shard]) == sorted(f"v{i}".encode() for i in range(10))


def test_run_blocks_until_ctrl_c_then_shuts_down_gracefully(kinesis_endpoint, dynamodb_endpoint):
    stream, app = create_stream(shards=1), unique("app")
    (shard,) = shard_ids(stream)
    with kinesis_rs.Producer(stream, region=REGION, endpoint_url=kinesis_endpoint) as producer:
        producer.put("k", b"v")
    shared = Shared()
    worker = scheduler(stream, app, lambda: Recorder(shared), kinesis_endpoint, dynamodb_endpoint)

    def interrupt_once_running():
        wait_for(lambda: shared.count(shard) == 1, 60, "the record")
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_running, daemon=True).start()
    started = time.monotonic()
    worker.run()  # returns after Ctrl-C, having shut down gracefully
    assert time.monotonic() - started < 60
    assert not worker.running
    assert shared.ended == {shard: "shutdownRequested"}
    assert "leaseOwner" not in leases(app)[shard]


def test_shutdown_from_another_thread_ends_run(kinesis_endpoint, dynamodb_endpoint):
    stream, app = create_stream(shards=1), unique("app")
    shared = Shared()
    worker = scheduler(stream, app, lambda: Recorder(shared), kinesis_endpoint, dynamodb_endpoint)
    timer = threading.Timer(1.0, worker.shutdown)
    timer.start()
    worker.run()
    timer.join()
    assert not worker.running
    with pytest.raises(kinesis_rs.SchedulerError, match="shut down"):
        worker.start()


def test_options_are_checked(kinesis_endpoint, dynamodb_endpoint):
    stream = create_stream(shards=1)
    make = lambda **kw: scheduler(stream, unique("app"), lambda: None, kinesis_endpoint,
                                  dynamodb_endpoint, **kw)
    with pytest.raises(ValueError, match="initial_position"):
        make(initial_position="OLDEST")
    with pytest.raises(ValueError, match="AT_TIMESTAMP needs"):
        make(initial_position="AT_TIMESTAMP")
    with pytest.raises(ValueError, match="unknown lease option"):
        make(failoverTime=5)
    with pytest.raises(TypeError, match="callable"):
        scheduler(stream, unique("app"), "not callable", kinesis_endpoint, dynamodb_endpoint)
    worker = make(epsilonMillis=50, enablePriorityLeaseAssignment=False)
    assert worker.worker_id.startswith("worker-")
    worker.shutdown()  # never started: nothing to do


def test_kclpy_imports_port_by_changing_the_package_name():
    # from amazon_kclpy import kcl / from amazon_kclpy.v3 import processor
    assert kcl.RecordProcessorBase is processor.RecordProcessorBase
    error = kcl.CheckpointError("ShutdownException")
    assert error.value == "ShutdownException" and str(error) == "'ShutdownException'"
    with pytest.raises(TypeError):
        processor.RecordProcessorBase()  # abstract, as in amazon-kclpy
    from kinesis_rs import messages
    assert messages.Record is kinesis_rs.Record
