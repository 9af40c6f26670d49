"""A MultiLangDaemon child for the tests: speaks the protocol by hand (no amazon-kclpy) and
appends every message it receives, and every checkpoint reply, to $RECORDER_LOG as JSON lines.

RECORDER_MODE:
  ""      first batch of each child: a malformed checkpoint and one beyond the batch, then a
          checkpoint at the batch's last record; later batches: the last record
  "hold"  from the second batch of a child on, wait for the file $RECORDER_GO before
          checkpointing (the test steals the lease meanwhile)
  "crash" exit(3) without answering on the second batch the shard ever sees (across children)
"""

import json
import os
import sys
import time

LOG = os.environ["RECORDER_LOG"]
MODE = os.environ.get("RECORDER_MODE", "")
PID = os.getpid()
shard = None


def log(event, **fields):
    with open(LOG, "a") as f:
        f.write(json.dumps(dict(event=event, shard=shard, pid=PID, **fields)) + "\n")


def send(message):
    # Surrounded by newlines, as amazon-kclpy writes.
    sys.stdout.write("\n" + json.dumps(message) + "\n")
    sys.stdout.flush()


def read_message():
    while True:
        line = sys.stdin.readline()
        if not line:
            return None
        if line.strip():
            return json.loads(line)


def checkpoint(sequence_number=None, sub_sequence_number=None):
    send({"action": "checkpoint", "sequenceNumber": sequence_number,
          "subSequenceNumber": sub_sequence_number})
    reply = read_message()
    log("checkpointReply", request=[sequence_number, sub_sequence_number], reply=reply)
    return reply


def shard_batches():
    """Counts the batches this shard has seen, across children."""
    path = "%s.batches.%s" % (LOG, shard)
    count = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as f:
        f.write(str(count + 1))
    return count + 1


batches = 0
while True:
    message = read_message()
    if message is None:
        log("eof")
        break
    action = message["action"]
    if action == "initialize":
        shard = message["shardId"]
    log(action, message=message)
    if action == "processRecords":
        batches += 1
        print("a line the application printed, not a message")
        sys.stdout.flush()
        sys.stderr.write("processing %d records\n" % len(message["records"]))
        sys.stderr.flush()
        last = message["records"][-1]
        if MODE == "crash" and shard_batches() == 2:
            log("crashing")
            sys.exit(3)
        if MODE == "hold" and batches >= 2:
            log("holding")
            while not os.path.exists(os.environ["RECORDER_GO"]):
                time.sleep(0.05)
        if MODE == "" and batches == 1:
            checkpoint("not-a-number")
            checkpoint(str(int(last["sequenceNumber"]) + 1), 0)
        checkpoint(last["sequenceNumber"], last["subSequenceNumber"])
    elif action in ("shutdownRequested", "shardEnded"):
        checkpoint()
    send({"action": "status", "responseFor": action})
