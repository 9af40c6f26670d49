#!/usr/bin/env python3
"""Interop harness between our Rust `kinesis-aggregation` crate and the Python
package `aws-kinesis-agg` 1.2.3 (the reference implementation of the KPL
aggregated-record format: MAGIC F3 89 9A C2 || protobuf AggregatedRecord ||
MD5(protobuf bytes)).

Needs Python 3.11 with only the stdlib and `aws_kinesis_agg` (plus its
undeclared dependency `six`, and `protobuf`).  Use the project venv:

    python3 -m venv .local/venv
    .local/venv/bin/pip install aws-kinesis-agg==1.2.3 six
    PY=.local/venv/bin/python

All files are JSON Lines, one test case per line.  Binary data is always
standard base64 (with padding).  Strings are written as UTF-8 JSON.

Subcommands
-----------
make-inputs OUT.jsonl
    Writes the deterministic (fixed seed) interop cases, one line each:
        {"case": str, "max_size": int | null,
         "user_records": [{"partition_key": str,
                           "explicit_hash_key": str | null,
                           "data": base64}, ...]}
    `max_size` null means "the aggregator's default".  NOTE: the default of
    aws-kinesis-agg is 1,048,576 bytes (1 MiB), not the KPL's 51,200; every
    case where the limit matters therefore sets max_size explicitly (51200
    or 1000); only tiny cases use null.

    $PY scripts/agg_interop.py make-inputs /tmp/cases.jsonl

python-aggregate [--keys str|bytes] IN.jsonl OUT.jsonl
    For each case, feeds its user records in order to a fresh
    aws_kinesis_agg.aggregator.RecordAggregator(max_size=...) and collects
    every emitted record plus the final clear_and_get() one.  Writes the
    input line plus:
        "kinesis_records": [{"partition_key": str,
                             "explicit_hash_key": str | null,
                             "data": base64,           # the full blob
                             "user_record_count": int, # extra, informative
                             "python_estimated_size": int}],  # extra
        "python_key_mode": "str" | "bytes"
    --keys str (default) passes partition / explicit hash keys as Python
    str, which is how the package is normally used.  In that mode the
    package's size estimate is an OVER-estimate (its key-table lookup
    compares the UTF-8 bytes against the stored str keys, which never
    match), so it splits earlier than an exact computation.  --keys bytes
    passes keys as UTF-8 bytes, which makes the estimate exact (then the
    split points equal those of an exact "total serialized size <=
    max_size" rule).  The blob bytes for a given set of records are
    identical in both modes; only the split points can differ.
    The aggregate's partition key / explicit hash key are those of its
    FIRST user record (EHK null if that record has none); every emitted
    record, even one holding a single user record, is in aggregated format.
    Exits non-zero if the package silently dropped a user record (it does
    so for a record whose own size estimate e satisfies
    max_size - 20 < e <= max_size: it emits an empty 20-byte aggregate
    instead) or rejected one (e > max_size raises ValueError).

    $PY scripts/agg_interop.py python-aggregate /tmp/cases.jsonl /tmp/py_agg.jsonl

python-deaggregate [--strict] IN.jsonl OUT.jsonl
    Reads lines holding "kinesis_records" (any other fields are copied
    through).  Each Kinesis record is wrapped in the Lambda/GetRecords
    event shape the package expects,
        {"kinesis": {"kinesisSchemaVersion": "1.0",
                     "sequenceNumber": "<SEQ>",
                     "approximateArrivalTimestamp": ...,
                     "partitionKey": pk,
                     ["explicitHashKey": ehk,]   # only if not null
                     "data": base64}}
    and passed to aws_kinesis_agg.deaggregator.deaggregate_records().
    Adds to the line:
        "python_deaggregated": [{"partition_key": str,
                                 "explicit_hash_key": str | null,
                                 "data": base64,
                                 "sub_sequence_number": int | null,
                                 "aggregated": bool,       # extra
                                 "source_index": int,      # extra: index in kinesis_records
                                 "ehk_defaulted": bool}]   # extra, see below
    Non-aggregated / corrupt records come back unchanged from the package
    (sub_sequence_number null, aggregated false).
    If the line has "user_records", the deaggregated records must equal them
    (partition key, explicit hash key, data) in order, else a clear message
    is printed and the exit status is 1 (after writing OUT).
    Known package bug: a sub-record WITHOUT an explicit_hash_key_index inside
    an aggregate whose explicit_hash_key_table is non-empty is reported by
    the package with explicit_hash_key = table[0] (protobuf default index 0).
    Such records get "ehk_defaulted": true, and by default the comparison
    treats their key as null (i.e. what was actually encoded).  --strict
    disables that allowance.

    $PY scripts/agg_interop.py python-deaggregate /tmp/py_agg.jsonl /tmp/py_rt.jsonl
    $PY scripts/agg_interop.py python-deaggregate /tmp/rust_agg.jsonl /tmp/rust_by_py.jsonl

rust-aggregate --kinesis PATH IN.jsonl OUT.jsonl
    For each case, runs our `kinesis agg encode [--max-size N]` (null
    max_size: our default, 51,200) on the case's user records and writes the
    line plus "kinesis_records" as the tool printed them.  Feed the result
    to python-deaggregate to have the package check our blobs.

check-roundtrip
    Self-test in a temp dir: make-inputs -> python-aggregate (both key
    modes) -> python-deaggregate, asserting equality, plus checks of the
    package behaviours the Rust side relies on (size limits, key-table
    de-duplication, pass-through of plain/corrupt records, the EHK bug).

    $PY scripts/agg_interop.py check-roundtrip
"""

import argparse
import base64
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile

MAGIC = b"\xf3\x89\x9a\xc2"
DIGEST_SIZE = 16
SEQUENCE_NUMBER = "49590338271490256608559692538361571095921575989136588898"
ARRIVAL_TIMESTAMP = 1700000000.0
KPL_DEFAULT_MAX_SIZE = 51200
SEED = 0x4B494E45  # "KINE"


# --------------------------------------------------------------------------
# helpers


def b64e(b):
    return base64.b64encode(b).decode("ascii")


def b64d(s):
    if isinstance(s, bytes):
        s = s.decode("ascii")
    return base64.b64decode(s, validate=True)


def read_jsonl(path):
    out = []
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                die(f"{path}:{n}: invalid JSON: {e}")
    return out


def write_jsonl(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
            f.write("\n")


def die(msg):
    print(f"agg_interop: error: {msg}", file=sys.stderr)
    sys.exit(1)


def to_str(v, what):
    """Keys come back from the package as str (or bytes in --keys bytes
    mode, or for invalid UTF-8 in a decoded table)."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            print(f"agg_interop: warning: {what} is not valid UTF-8: {v!r}", file=sys.stderr)
            return v.decode("utf-8", "backslashreplace")
    raise TypeError(f"unexpected {what} type {type(v)}")


def inspect_aggregate(blob):
    """Decode a blob exactly the way the package's deaggregator decides
    whether it is aggregated.  Returns None if the package would pass it
    through, else (AggregatedRecord message or None if the protobuf does not
    parse)."""
    # messages_pb2 does `import config_pb2`, which only resolves after the
    # package's aggregator/deaggregator modules have patched sys.path.
    import aws_kinesis_agg.deaggregator  # noqa: F401
    from aws_kinesis_agg import messages_pb2
    import google.protobuf.message

    if len(blob) < len(MAGIC) or blob[: len(MAGIC)] != MAGIC:
        return None
    rest = blob[len(MAGIC):]
    if len(rest) <= DIGEST_SIZE:
        return None
    body, digest = rest[:-DIGEST_SIZE], rest[-DIGEST_SIZE:]
    if hashlib.md5(body).digest() != digest:
        return None
    ar = messages_pb2.AggregatedRecord()
    try:
        ar.ParseFromString(body)
    except google.protobuf.message.DecodeError:
        return None
    return ar


# --------------------------------------------------------------------------
# make-inputs


def make_cases(seed=SEED):
    rng = random.Random(seed)

    def rb(n):
        return rng.randbytes(n)

    def ur(pk, data, ehk=None):
        return {"partition_key": pk, "explicit_hash_key": ehk, "data": b64e(data)}

    def alnum(n):
        return "".join(rng.choices("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=n))

    cases = []

    def case(name, max_size, recs):
        cases.append({"case": name, "max_size": max_size, "user_records": recs})

    # 1. one record.  NOTE: aws-kinesis-agg still emits it as a 1-record
    #    aggregate (magic+protobuf+md5); KPL-style aggregators send it plain.
    case("single", None, [ur("single-key", b"hello, kinesis")])

    # 2. a few records, distinct keys.
    case("few", None, [ur(f"key-{i}", rb(rng.randint(1, 40))) for i in range(5)])

    # 3. ~500 records over 7 keys -> de-duplicated key table, fits one aggregate.
    pool = [f"user-{alnum(6)}" for _ in range(7)]
    case("repeated_keys_500", KPL_DEFAULT_MAX_SIZE,
         [ur(rng.choice(pool), rb(rng.randint(0, 60))) for _ in range(500)])

    # 4. > 127 distinct keys -> two-byte varint key indexes.
    case("many_distinct_keys_300", KPL_DEFAULT_MAX_SIZE,
         [ur(f"distinct-{i:04d}", rb(rng.randint(0, 30))) for i in range(300)])

    # 5. every record has an explicit hash key, some repeated; includes the
    #    extremes 0 and 2^128-1.
    ehks = ["0", str(2**128 - 1), str(2**127), str(rng.getrandbits(128))]
    case("explicit_hash_keys_all", KPL_DEFAULT_MAX_SIZE,
         [ur(f"ehk-pk-{i % 5}", rb(rng.randint(1, 50)), rng.choice(ehks)) for i in range(24)])

    # 6. mixed: some records with an EHK, some without; first record has one
    #    (the aggregate's EHK is the first record's).  Exercises the
    #    package's deaggregator bug (records without EHK come back with
    #    table[0]).
    recs = []
    for i in range(16):
        ehk = rng.choice(ehks) if (i == 0 or rng.random() < 0.5) else None
        recs.append(ur(f"mixed-{i % 3}", rb(rng.randint(1, 50)), ehk))
    case("explicit_hash_keys_mixed_first_present", KPL_DEFAULT_MAX_SIZE, recs)

    # 7. mixed, first record without EHK -> aggregate EHK is null.
    recs = []
    for i in range(16):
        ehk = None if (i == 0 or rng.random() < 0.5) else rng.choice(ehks)
        recs.append(ur(f"mixed-{i % 3}", rb(rng.randint(1, 50)), ehk))
    case("explicit_hash_keys_mixed_first_absent", KPL_DEFAULT_MAX_SIZE, recs)

    # 8. empty data (first record empty too).
    case("empty_data", KPL_DEFAULT_MAX_SIZE,
         [ur("empty-a", b""), ur("empty-b", rb(10)), ur("empty-a", b""),
          ur("empty-c", b""), ur("empty-b", rb(3)), ur("empty-a", b"")])

    # 9. non-ASCII partition keys (2-, 3- and 4-byte UTF-8, combining marks).
    na = ["é", "Grüße", "日本語キー", "ключ", "🦀🚀", "e\u0301", "مفتاح", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"]
    case("non_ascii_keys", KPL_DEFAULT_MAX_SIZE,
         [ur(rng.choice(na), rb(rng.randint(0, 40)), rng.choice([None, ehks[3]]) if i else None)
          for i in range(30)])

    # 10. 256-character keys (the Kinesis maximum; counted in Unicode chars):
    #     ASCII (256 bytes), 2-byte (512), 3-byte (768), 4-byte (1024 bytes).
    long_keys = ["k" * 256, alnum(256), "ß" * 256, "語" * 256, "🦀" * 256]
    case("long_keys_256", KPL_DEFAULT_MAX_SIZE,
         [ur(long_keys[i % len(long_keys)], rb(rng.randint(0, 100))) for i in range(15)])

    # 11. varint boundaries for data lengths.
    case("data_varint_boundaries", KPL_DEFAULT_MAX_SIZE,
         [ur("vb", rb(n)) for n in (0, 1, 127, 128, 255, 256, 16383, 16384)])

    # 12. several-KB records overflowing the 51,200-byte KPL default into
    #     several aggregates.
    pool = [f"big-{i}" for i in range(4)]
    case("overflow_default_limit", KPL_DEFAULT_MAX_SIZE,
         [ur(rng.choice(pool), rb(rng.randint(2000, 6000))) for _ in range(60)])

    # 13. same records with the package's own default (null -> 1 MiB): all
    #     in one aggregate for aws-kinesis-agg.
    case("overflow_default_limit_null_max", None, cases[-1]["user_records"])

    # 14. smaller max size (supported: RecordAggregator(max_size=...)).
    case("small_max_size_1000", 1000,
         [ur(f"sm-{rng.randint(0, 5)}", rb(rng.randint(0, 200))) for _ in range(40)])

    # 15. small max size with explicit hash keys.
    case("small_max_size_1000_ehk", 1000,
         [ur(f"sme-{rng.randint(0, 3)}", rb(rng.randint(0, 150)), rng.choice(ehks))
          for _ in range(30)])

    # 16. records that each nearly fill a 1,000-byte aggregate (one user
    #     record per aggregate; largest safe size: estimate <= max_size-20).
    case("small_max_size_one_per_aggregate", 1000,
         [ur("one", rb(960)), ur("one", rb(900)), ur("two", rb(960))])
    return cases


def cmd_make_inputs(args):
    cases = make_cases()
    write_jsonl(args.out, cases)
    print(f"wrote {len(cases)} cases to {args.out}", file=sys.stderr)


# --------------------------------------------------------------------------
# python-aggregate


def aggregate_case(case, key_mode="str"):
    import aws_kinesis_agg
    from aws_kinesis_agg.aggregator import RecordAggregator

    max_size = case.get("max_size")
    agg = RecordAggregator() if max_size is None else RecordAggregator(max_size=max_size)
    limit = agg.max_size
    emitted = []
    for i, u in enumerate(case["user_records"]):
        pk = u["partition_key"]
        ehk = u.get("explicit_hash_key")
        data = b64d(u["data"])
        if key_mode == "bytes":
            pk = pk.encode("utf-8")
            ehk = None if ehk is None else ehk.encode("utf-8")
        try:
            r = agg.add_user_record(pk, data, ehk)
        except ValueError as e:
            raise SystemExit(f"agg_interop: case {case['case']!r}: user record {i} rejected by aws-kinesis-agg: {e}")
        if r is not None:
            emitted.append(r)
    r = agg.clear_and_get()
    if r is not None:
        emitted.append(r)

    out = []
    total = 0
    for r in emitted:
        pk, ehk, blob = r.get_contents()
        n = r.get_num_user_records()
        total += n
        if n == 0:
            raise SystemExit(
                f"agg_interop: case {case['case']!r}: aws-kinesis-agg emitted an EMPTY aggregate "
                f"(silently dropping a user record whose framed size is in (max_size-20, max_size])")
        if len(blob) > limit:
            raise SystemExit(f"agg_interop: case {case['case']!r}: aggregate of {len(blob)} bytes exceeds max_size {limit}")
        out.append({
            "partition_key": to_str(pk, "aggregate partition key"),
            "explicit_hash_key": to_str(ehk, "aggregate explicit hash key"),
            "data": b64e(blob),
            "user_record_count": n,
            "python_estimated_size": r.get_size_bytes(),
        })
    if total != len(case["user_records"]):
        raise SystemExit(f"agg_interop: case {case['case']!r}: {len(case['user_records'])} user records in, {total} out")
    return out


def cmd_python_aggregate(args):
    lines = read_jsonl(args.input)
    for line in lines:
        if "user_records" not in line:
            die(f"case {line.get('case')!r} has no user_records")
        line["kinesis_records"] = aggregate_case(line, args.keys)
        line["python_key_mode"] = args.keys
    write_jsonl(args.output, lines)
    print(f"aggregated {len(lines)} cases -> {args.output}", file=sys.stderr)


# --------------------------------------------------------------------------
# python-deaggregate


def deaggregate_kinesis_record(kr, source_index):
    from aws_kinesis_agg.deaggregator import deaggregate_records

    data_b64 = b64e(b64d(kr["data"]))
    k = {
        "kinesisSchemaVersion": "1.0",
        "sequenceNumber": SEQUENCE_NUMBER,
        "approximateArrivalTimestamp": ARRIVAL_TIMESTAMP,
        "partitionKey": kr["partition_key"],
        "data": data_b64,
    }
    if kr.get("explicit_hash_key") is not None:
        k["explicitHashKey"] = kr["explicit_hash_key"]
    event = {"eventSource": "aws:kinesis", "eventID": f"shardId-000000000000:{SEQUENCE_NUMBER}",
             "kinesis": k}
    subs = deaggregate_records([event])

    ar = inspect_aggregate(b64d(data_b64))
    problems = []
    if ar is not None and len(subs) != len(ar.records):
        problems.append(
            f"kinesis record {source_index}: protobuf holds {len(ar.records)} records but the "
            f"package yielded {len(subs)} (it stops at the first bad index and only prints to stderr)")

    out = []
    for j, s in enumerate(subs):
        kk = s["kinesis"]
        aggregated = bool(kk.get("aggregated", False))
        if kk.get("sequenceNumber") != SEQUENCE_NUMBER:
            problems.append(f"kinesis record {source_index} sub {j}: sequenceNumber changed to {kk.get('sequenceNumber')!r}")
        ssn = kk.get("subSequenceNumber") if aggregated else None
        ehk = to_str(kk.get("explicitHashKey"), "explicit hash key")
        defaulted = False
        if aggregated and ar is not None and j < len(ar.records):
            pr = ar.records[j]
            if not pr.HasField("explicit_hash_key_index") and len(ar.explicit_hash_key_table) > 0:
                defaulted = True
        d = kk["data"]
        out.append({
            "partition_key": to_str(kk.get("partitionKey"), "partition key"),
            "explicit_hash_key": ehk,
            "data": b64e(b64d(d)),
            "sub_sequence_number": ssn,
            "aggregated": aggregated,
            "source_index": source_index,
            "ehk_defaulted": defaulted,
        })
    return out, problems


def short(v, n=60):
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def compare_with_user_records(case, user_records, deagg, strict):
    """Returns a list of error strings (empty if equal)."""
    errors = []
    if len(user_records) != len(deagg):
        errors.append(f"case {case!r}: expected {len(user_records)} user records, python deaggregated {len(deagg)}")
    for i, (u, d) in enumerate(zip(user_records, deagg)):
        got_ehk = d["explicit_hash_key"]
        if d["ehk_defaulted"] and not strict:
            got_ehk = None
        exp = (u["partition_key"], u.get("explicit_hash_key"), b64d(u["data"]))
        got = (d["partition_key"], got_ehk, b64d(d["data"]))
        if exp != got:
            what = [name for name, a, b in zip(("partition_key", "explicit_hash_key", "data"), exp, got) if a != b]
            detail = "; ".join(f"{w}: expected {short(a)} got {short(b)}"
                               for w, a, b in zip(("partition_key", "explicit_hash_key", "data"), exp, got) if a != b)
            errors.append(f"case {case!r}: user record {i} (from kinesis record {d['source_index']}, "
                          f"sub_sequence_number {d['sub_sequence_number']}) differs in {', '.join(what)}: {detail}"
                          + (" [package EHK bug: record has no EHK index, package reported table[0]]" if d["ehk_defaulted"] else ""))
            if len(errors) >= 10:
                errors.append("... (further differences not shown)")
                break
    return errors


def cmd_python_deaggregate(args):
    lines = read_jsonl(args.input)
    failures = []
    quirks = 0
    for line in lines:
        case = line.get("case")
        if "kinesis_records" not in line:
            die(f"case {case!r}: line has no kinesis_records")
        deagg = []
        for idx, kr in enumerate(line["kinesis_records"]):
            recs, problems = deaggregate_kinesis_record(kr, idx)
            for p in problems:
                print(f"agg_interop: warning: case {case!r}: {p}", file=sys.stderr)
            deagg.extend(recs)
        quirks += sum(1 for d in deagg if d["ehk_defaulted"])
        line["python_deaggregated"] = deagg
        if "user_records" in line:
            failures.extend(compare_with_user_records(case, line["user_records"], deagg, args.strict))
    write_jsonl(args.output, lines)
    if quirks:
        print(f"agg_interop: note: {quirks} sub-record(s) hit the package's EHK bug (no EHK index -> "
              f"reported as explicit_hash_key_table[0]); marked ehk_defaulted"
              + ("" if args.strict else ", compared as null"), file=sys.stderr)
    if failures:
        print("agg_interop: DEAGGREGATION MISMATCH against user_records:", file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        sys.exit(1)
    print(f"deaggregated {len(lines)} cases -> {args.output}", file=sys.stderr)


# --------------------------------------------------------------------------
# check-roundtrip


def run_self(*argv, expect_ok=True):
    p = subprocess.run([sys.executable, os.path.abspath(__file__), *argv],
                       capture_output=True, text=True)
    if expect_ok and p.returncode != 0:
        raise AssertionError(f"`{' '.join(argv)}` failed ({p.returncode}):\n{p.stderr}")
    return p


def cmd_check_roundtrip(args):
    with tempfile.TemporaryDirectory(prefix="agg_interop_") as tmp:
        inputs = os.path.join(tmp, "cases.jsonl")
        run_self("make-inputs", inputs)
        again = os.path.join(tmp, "cases2.jsonl")
        run_self("make-inputs", again)
        assert open(inputs, "rb").read() == open(again, "rb").read(), "make-inputs is not deterministic"
        cases = {c["case"]: c for c in read_jsonl(inputs)}

        per_mode = {}
        for mode in ("str", "bytes"):
            agg = os.path.join(tmp, f"agg_{mode}.jsonl")
            rt = os.path.join(tmp, f"rt_{mode}.jsonl")
            run_self("python-aggregate", "--keys", mode, inputs, agg)
            p = run_self("python-deaggregate", agg, rt)
            lines = {l["case"]: l for l in read_jsonl(rt)}
            per_mode[mode] = lines
            assert set(lines) == set(cases)

            for name, l in lines.items():
                krs = l["kinesis_records"]
                limit = l["max_size"] if l["max_size"] is not None else 1024 * 1024
                for kr in krs:
                    blob = b64d(kr["data"])
                    assert len(blob) <= limit, (name, len(blob), limit)
                    assert blob[:4] == MAGIC, f"{name}: package emitted a non-aggregated record"
                    assert kr["python_estimated_size"] >= len(blob), (name, kr["python_estimated_size"], len(blob))
                    if mode == "bytes":
                        assert kr["python_estimated_size"] == len(blob), (name, kr["python_estimated_size"], len(blob))
                    # aggregate PK/EHK = first contained user record's
                    ar = inspect_aggregate(blob)
                    first = ar.records[0]
                    assert kr["partition_key"] == ar.partition_key_table[first.partition_key_index]
                    exp_ehk = (ar.explicit_hash_key_table[first.explicit_hash_key_index]
                               if first.HasField("explicit_hash_key_index") else None)
                    assert kr["explicit_hash_key"] == exp_ehk, (name, kr["explicit_hash_key"], exp_ehk)
                    # key tables are de-duplicated
                    assert len(set(ar.partition_key_table)) == len(ar.partition_key_table)
                    assert len(set(ar.explicit_hash_key_table)) == len(ar.explicit_hash_key_table)
                for d in l["python_deaggregated"]:
                    assert d["aggregated"] and isinstance(d["sub_sequence_number"], int)

            s = lines["single"]["kinesis_records"]
            assert len(s) == 1 and s[0]["user_record_count"] == 1
            ar = inspect_aggregate(b64d(lines["repeated_keys_500"]["kinesis_records"][0]["data"]))
            assert len(ar.partition_key_table) == 7 and len(ar.records) == 500
            assert len(lines["overflow_default_limit"]["kinesis_records"]) > 1
            assert len(lines["overflow_default_limit_null_max"]["kinesis_records"]) == 1
            assert len(lines["small_max_size_1000"]["kinesis_records"]) > 1
            assert len(lines["small_max_size_one_per_aggregate"]["kinesis_records"]) == 3
            assert lines["explicit_hash_keys_mixed_first_absent"]["kinesis_records"][0]["explicit_hash_key"] is None
            assert lines["explicit_hash_keys_mixed_first_present"]["kinesis_records"][0]["explicit_hash_key"] is not None
            assert any(d["ehk_defaulted"] for d in lines["explicit_hash_keys_mixed_first_present"]["python_deaggregated"])
            # sub-sequence numbers restart at 0 for every kinesis record
            ov = lines["overflow_default_limit"]["python_deaggregated"]
            for d in ov:
                prior = [x for x in ov if x["source_index"] == d["source_index"]]
                assert [x["sub_sequence_number"] for x in prior] == list(range(len(prior)))

            # --strict must detect the EHK bug on the mixed cases
            p = run_self("python-deaggregate", "--strict", agg, os.path.join(tmp, "strict.jsonl"), expect_ok=False)
            assert p.returncode != 0 and "explicit_hash_key" in p.stderr, p.stderr

        # blobs of the two key modes differ only in split points
        for name in cases:
            a = per_mode["str"][name]["kinesis_records"]
            b = per_mode["bytes"][name]["kinesis_records"]
            if [x["user_record_count"] for x in a] == [x["user_record_count"] for x in b]:
                assert [x["data"] for x in a] == [x["data"] for x in b], name
        split_diff = [n for n in cases
                      if len(per_mode["str"][n]["kinesis_records"]) != len(per_mode["bytes"][n]["kinesis_records"])]

        # plain / corrupt records are passed through unchanged; mismatches fail
        good = b64d(per_mode["str"]["few"]["kinesis_records"][0]["data"])
        body = good[4:-16]
        plain_cases = [
            ("plain", b"just some bytes"),
            ("empty", b""),
            ("magic_only", MAGIC),
            ("magic_plus_md5_of_nothing", MAGIC + hashlib.md5(b"").digest()),
            ("bad_md5", good[:-1] + bytes([good[-1] ^ 1])),
            ("truncated", good[:-3]),
            ("garbage_protobuf_valid_md5", MAGIC + b"\xff\xff\xff" + hashlib.md5(b"\xff\xff\xff").digest()),
        ]
        pt_in = os.path.join(tmp, "passthrough.jsonl")
        write_jsonl(pt_in, [{"case": n, "kinesis_records": [{"partition_key": "outer-pk", "explicit_hash_key": "42", "data": b64e(b)}],
                             "user_records": [{"partition_key": "outer-pk", "explicit_hash_key": "42", "data": b64e(b)}]}
                            for n, b in plain_cases])
        run_self("python-deaggregate", pt_in, os.path.join(tmp, "passthrough_out.jsonl"))
        for l in read_jsonl(os.path.join(tmp, "passthrough_out.jsonl")):
            (d,) = l["python_deaggregated"]
            assert d["aggregated"] is False and d["sub_sequence_number"] is None, l["case"]

        # a tampered record must make python-deaggregate fail with a message
        bad_in = os.path.join(tmp, "bad.jsonl")
        l = dict(per_mode["str"]["few"])
        l["user_records"] = [dict(u) for u in l["user_records"]]
        l["user_records"][2]["data"] = b64e(b"tampered")
        del l["python_deaggregated"]
        write_jsonl(bad_in, [l])
        p = run_self("python-deaggregate", bad_in, os.path.join(tmp, "bad_out.jsonl"), expect_ok=False)
        assert p.returncode == 1 and "user record 2" in p.stderr, p.stderr

        # a valid aggregate with zero records yields nothing at all
        zero = bytes.fromhex("0a0161")  # partition_key_table = ["a"], no records
        zero_in = os.path.join(tmp, "zero.jsonl")
        write_jsonl(zero_in, [{"case": "zero", "kinesis_records": [{"partition_key": "p", "explicit_hash_key": None,
                                                                     "data": b64e(MAGIC + zero + hashlib.md5(zero).digest())}]}])
        run_self("python-deaggregate", zero_in, os.path.join(tmp, "zero_out.jsonl"))
        assert read_jsonl(os.path.join(tmp, "zero_out.jsonl"))[0]["python_deaggregated"] == []

        print("check-roundtrip: OK")
        for name in cases:
            a = per_mode["str"][name]["kinesis_records"]
            b = per_mode["bytes"][name]["kinesis_records"]
            print(f"  {name:42s} users={len(cases[name]['user_records']):4d} "
                  f"aggregates(str keys)={len(a)} aggregates(bytes keys)={len(b)} "
                  f"max_blob={max(len(b64d(x['data'])) for x in a)}")
        if split_diff:
            print(f"  split points differ between key modes for: {', '.join(split_diff)}")


# --------------------------------------------------------------------------
# rust-aggregate


def cmd_rust_aggregate(args):
    """Runs our `kinesis agg encode` on each case and records what it emits."""
    lines = read_jsonl(args.input)
    for line in lines:
        cmd = [args.kinesis, "agg", "encode"]
        if line.get("max_size") is not None:
            cmd += ["--max-size", str(line["max_size"])]
        stdin = "".join(json.dumps({k: v for k, v in u.items() if v is not None}) + "\n"
                        for u in line["user_records"])
        p = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
        if p.returncode != 0:
            die(f"case {line['case']!r}: {' '.join(cmd)} failed: {p.stderr.strip()}")
        line["kinesis_records"] = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    write_jsonl(args.output, lines)
    print(f"aggregated {len(lines)} cases with {args.kinesis} -> {args.output}", file=sys.stderr)


# --------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("make-inputs", help="write the deterministic interop cases")
    p.add_argument("out")
    p.set_defaults(fn=cmd_make_inputs)

    p = sub.add_parser("python-aggregate", help="aggregate each case's user_records with aws-kinesis-agg")
    p.add_argument("--keys", choices=("str", "bytes"), default="str",
                   help="pass keys to the package as str (default, usual usage; over-estimating sizes) or UTF-8 bytes (exact sizes)")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(fn=cmd_python_aggregate)

    p = sub.add_parser("python-deaggregate", help="deaggregate each line's kinesis_records with aws-kinesis-agg")
    p.add_argument("--strict", action="store_true",
                   help="do not excuse the package's EHK bug (missing EHK index reported as table[0])")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(fn=cmd_python_deaggregate)

    p = sub.add_parser("rust-aggregate", help="aggregate each case's user_records with our `kinesis agg encode`")
    p.add_argument("--kinesis", required=True, help="path to the kinesis binary")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(fn=cmd_rust_aggregate)

    p = sub.add_parser("check-roundtrip", help="self-test")
    p.set_defaults(fn=cmd_check_roundtrip)

    args = ap.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
