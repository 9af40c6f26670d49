"""Endpoints of the local servers and a tiny signed AWS JSON client for test setup (creating
streams, reading and editing lease tables) that needs no boto3.

The servers must be running (scripts/servers start); the tests fail, never skip, without them.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import pathlib
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import socket

import pytest

import kinesis_rs

REPO = pathlib.Path(__file__).resolve().parents[3]
SERVERS_ENV = REPO / ".local" / "run" / "servers.env"
REGION = "us-east-1"


def _load_servers_env() -> None:
    """Fills in variables missing from the environment from .local/run/servers.env."""
    if not SERVERS_ENV.exists():
        return
    for line in SERVERS_ENV.read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):]
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            os.environ.setdefault(key.strip(), value.strip().strip("'\""))


_load_servers_env()
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_REGION", REGION)


def endpoint(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: start the local servers (scripts/servers start) and source "
            f".local/run/servers.env"
        )
    return value


def unique(prefix: str) -> str:
    return f"py-{prefix}-{uuid.uuid4().hex[:12]}"


def _sign(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def aws_call(url: str, service: str, target: str, body: dict) -> dict:
    """One AWS JSON-protocol call, signed with SigV4 (the local servers accept test/test)."""
    payload = json.dumps(body).encode()
    content_type = "application/x-amz-json-1.0" if service == "dynamodb" else "application/x-amz-json-1.1"
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = urllib.parse.urlparse(url).netloc
    headers = {"content-type": content_type, "host": host, "x-amz-date": amz_date, "x-amz-target": target}
    signed = ";".join(sorted(headers))
    canonical = "POST\n/\n\n" + "".join(f"{k}:{headers[k]}\n" for k in sorted(headers))
    canonical += f"\n{signed}\n{hashlib.sha256(payload).hexdigest()}"
    scope = f"{day}/{REGION}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = ("AWS4" + os.environ["AWS_SECRET_ACCESS_KEY"]).encode()
    for part in (day, REGION, service, "aws4_request"):
        key = _sign(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={os.environ['AWS_ACCESS_KEY_ID']}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    del headers["host"]
    request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"{target} failed: {err.code} {err.read()!r}") from None
    return json.loads(text) if text else {}


def kinesis(op: str, body: dict, server: str = "KINESALITE_ENDPOINT") -> dict:
    return aws_call(endpoint(server), "kinesis", f"Kinesis_20131202.{op}", body)


def dynamodb(op: str, body: dict) -> dict:
    return aws_call(endpoint("DYNAMODB_LOCAL_ENDPOINT"), "dynamodb", f"DynamoDB_20120810.{op}", body)


def create_stream(shards: int, server: str = "KINESALITE_ENDPOINT") -> str:
    """A new stream on kinesalite (or `server`), ACTIVE, with a unique name."""
    name = unique("stream")
    kinesis("CreateStream", {"StreamName": name, "ShardCount": shards}, server)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        summary = kinesis("DescribeStreamSummary", {"StreamName": name}, server)
        status = summary["StreamDescriptionSummary"]["StreamStatus"]
        if status == "ACTIVE":
            return name
        time.sleep(0.05)
    raise RuntimeError(f"stream {name} not ACTIVE after 30 s")


def shard_ids(stream: str, server: str = "KINESALITE_ENDPOINT") -> list[str]:
    return sorted(s["ShardId"] for s in kinesis("ListShards", {"StreamName": stream}, server)["Shards"])


def leases(table: str) -> dict[str, dict]:
    """The lease table's items by leaseKey, attribute values unwrapped."""
    items = dynamodb("Scan", {"TableName": table, "ConsistentRead": True})["Items"]
    return {item["leaseKey"]["S"]: {k: next(iter(v.values())) for k, v in item.items()} for item in items}


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def kinesis_endpoint() -> str:
    return endpoint("KINESALITE_ENDPOINT")


@pytest.fixture
def dynamodb_endpoint() -> str:
    return endpoint("DYNAMODB_LOCAL_ENDPOINT")


def producer(stream: str, endpoint: str, **options) -> kinesis_rs.Producer:
    """A producer of `stream` on a local server, in the test region."""
    return kinesis_rs.Producer(stream, region=REGION, endpoint_url=endpoint, **options)


def closed_port_url() -> str:
    """An endpoint nothing listens on: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
