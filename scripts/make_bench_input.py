#!/usr/bin/env python3
"""Write a benchmark input file of N user records (stdlib only).

Usage: python3 scripts/make_bench_input.py OUT N [--seed SEED] [--data-size BYTES]

Format: N times [u8 partition_key_len][partition_key UTF-8 bytes]
                [u32 little-endian data_len][data bytes]
Partition keys: 16 random alphanumeric chars from a seeded RNG (default seed 42).
Data: 100 bytes from os.urandom per record (not reproducible, by design).
Read by scripts/bench_agg_python.py and by the Rust benchmark.
"""

import argparse
import os
import random
import struct
import sys

ALNUM = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("n", type=int)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--data-size", type=int, default=100)
    a = ap.parse_args()
    if a.n < 0:
        sys.exit("N must be >= 0")
    rng = random.Random(a.seed)
    alnum = list(ALNUM)
    data_len = struct.pack("<I", a.data_size)
    key_len = bytes([16])
    with open(a.out, "wb") as f:
        buf = []
        for i in range(a.n):
            key = bytes(rng.choices(alnum, k=16))
            buf.append(key_len + key + data_len + os.urandom(a.data_size))
            if len(buf) >= 65536:
                f.write(b"".join(buf))
                buf.clear()
        f.write(b"".join(buf))
    print(f"wrote {a.n} records to {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
