//! The hash keys of many partition keys at once: MD5 in SIMD lanes.
//!
//! A consumer applying the Java KCL's range rule hashes the partition key of every user record
//! it reads, and one MD5 of a short key costs as much as the rest of deaggregating the record.
//! One MD5 is a chain of 64 dependent steps, but the keys of an aggregate are independent, so
//! they are hashed [`LANES`] at a time: the same steps on arrays of lanes, written so that the
//! compiler turns them into vector instructions (SSE2, the x86-64 baseline; NEON on AArch64)
//! without `unsafe` code. A key of up to 55 bytes is one MD5 block; the rare longer one is
//! hashed on its own.

use md5::{Digest, Md5};

use crate::key::HashKey;

/// How many keys one pass hashes together. Sixteen lanes keep four 128-bit registers busy per
/// step, which hides the latency of the step chain better than eight.
const LANES: usize = 16;

/// The longest key that fits one MD5 block with its padding (a 0x80 byte and a 64-bit length).
const MAX_ONE_BLOCK: usize = 55;

type Lanes = [u32; LANES];

/// MD5's sine-derived constants, one per step.
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

/// MD5's left rotations, one per step.
const ROTATIONS: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, //
    5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, //
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, //
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

const INITIAL_STATE: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

/// Appends to `out` the hash key of each key in `keys`, in order: the same values as
/// [`HashKey::of_partition_key`], computed several at a time.
///
/// ```
/// use kinesis_aggregation::{HashKey, hash_keys};
/// let keys = ["a", "device-42", "€uro"];
/// let mut out = Vec::new();
/// hash_keys(keys.iter().map(|k| k.as_bytes()), &mut out);
/// let one_by_one: Vec<HashKey> = keys.iter().map(|k| HashKey::of_partition_key(k)).collect();
/// assert_eq!(out, one_by_one);
/// ```
pub fn hash_keys<'a>(keys: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<HashKey>) {
    let mut batch = Batch::new();
    for key in keys {
        if key.len() > MAX_ONE_BLOCK {
            out.push(HashKey(md5_be(key)));
            continue;
        }
        out.push(HashKey::MIN);
        batch.add(key, out.len() - 1);
        if batch.len == LANES {
            batch.finish(out);
        }
    }
    if batch.len > 0 {
        batch.finish(out);
    }
}

/// MD5 of `bytes` as a big-endian integer (the multi-block case).
fn md5_be(bytes: &[u8]) -> u128 {
    u128::from_be_bytes(Md5::digest(bytes).into())
}

/// Up to [`LANES`] one-block messages, word-major (`words[w][lane]`), and where each goes in
/// the output.
struct Batch {
    words: [Lanes; 16],
    slots: [usize; LANES],
    len: usize,
}

impl Batch {
    fn new() -> Self {
        Batch {
            words: [[0; LANES]; 16],
            slots: [0; LANES],
            len: 0,
        }
    }

    /// Pads `key` into the next lane's block; its hash goes to `out[slot]`.
    fn add(&mut self, key: &[u8], slot: usize) {
        let mut block = [0u8; 64];
        block[..key.len()].copy_from_slice(key);
        block[key.len()] = 0x80;
        block[56..].copy_from_slice(&(key.len() as u64 * 8).to_le_bytes());
        for (word, bytes) in self.words.iter_mut().zip(block.chunks_exact(4)) {
            word[self.len] = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        self.slots[self.len] = slot;
        self.len += 1;
    }

    /// Hashes the lanes in use (the others hold stale blocks, hashed and ignored) and empties.
    fn finish(&mut self, out: &mut [HashKey]) {
        let [a, b, c, d] = compress(&self.words);
        for lane in 0..self.len {
            // The digest is the state words little-endian; the hash key reads it big-endian.
            out[self.slots[lane]] = HashKey(
                (u128::from(a[lane].swap_bytes()) << 96)
                    | (u128::from(b[lane].swap_bytes()) << 64)
                    | (u128::from(c[lane].swap_bytes()) << 32)
                    | u128::from(d[lane].swap_bytes()),
            );
        }
        self.len = 0;
    }
}

/// Applies `f` lane by lane: a loop the compiler vectorises.
#[inline(always)]
fn each(x: &Lanes, y: &Lanes, z: &Lanes, f: impl Fn(u32, u32, u32) -> u32) -> Lanes {
    let mut out = [0; LANES];
    for lane in 0..LANES {
        out[lane] = f(x[lane], y[lane], z[lane]);
    }
    out
}

/// The MD5 compression of one block per lane, from the initial state (RFC 1321, 3.4).
///
/// Kept as a loop over the steps: unrolled by hand it stops being vectorised (measured: 3x
/// slower).
fn compress(words: &[Lanes; 16]) -> [Lanes; 4] {
    let [mut a, mut b, mut c, mut d] = INITIAL_STATE.map(|word| [word; LANES]);
    for step in 0..64 {
        let (mixed, word) = match step / 16 {
            0 => (each(&b, &c, &d, |b, c, d| (b & c) | (!b & d)), step),
            1 => (
                each(&b, &c, &d, |b, c, d| (b & d) | (c & !d)),
                (5 * step + 1) % 16,
            ),
            2 => (each(&b, &c, &d, |b, c, d| b ^ c ^ d), (3 * step + 5) % 16),
            _ => (each(&b, &c, &d, |b, c, d| c ^ (b | !d)), (7 * step) % 16),
        };
        let message = &words[word];
        let mut next = [0; LANES];
        for lane in 0..LANES {
            let sum = a[lane]
                .wrapping_add(mixed[lane])
                .wrapping_add(K[step])
                .wrapping_add(message[lane]);
            next[lane] = b[lane].wrapping_add(sum.rotate_left(ROTATIONS[step]));
        }
        (a, b, c, d) = (d, next, b, c);
    }
    for lane in 0..LANES {
        a[lane] = a[lane].wrapping_add(INITIAL_STATE[0]);
        b[lane] = b[lane].wrapping_add(INITIAL_STATE[1]);
        c[lane] = c[lane].wrapping_add(INITIAL_STATE[2]);
        d[lane] = d[lane].wrapping_add(INITIAL_STATE[3]);
    }
    [a, b, c, d]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::hash_key;
    use proptest::prelude::*;

    fn one_by_one(keys: &[Vec<u8>]) -> Vec<HashKey> {
        keys.iter().map(|k| HashKey(md5_be(k))).collect()
    }

    fn together(keys: &[Vec<u8>]) -> Vec<HashKey> {
        let mut out = vec![HashKey::MAX]; // what is there stays
        hash_keys(keys.iter().map(Vec::as_slice), &mut out);
        assert_eq!(out.remove(0), HashKey::MAX);
        out
    }

    #[test]
    fn every_length_around_the_one_block_limit_matches_md5() {
        // Lengths 0 to 64 in one call: both paths, lanes partly filled, long keys in between.
        let keys: Vec<Vec<u8>> = (0..=64u8)
            .map(|n| (0..n).map(|i| i ^ n).collect())
            .collect();
        assert_eq!(together(&keys), one_by_one(&keys));
    }

    #[test]
    fn known_digests() {
        // RFC 1321 test suite, read as big-endian integers.
        let keys = [b"".to_vec(), b"a".to_vec(), b"message digest".to_vec()];
        assert_eq!(
            together(&keys),
            [
                HashKey(0xd41d8cd98f00b204e9800998ecf8427e),
                HashKey(0x0cc175b9c0f1b6a831c399e269772661),
                HashKey(0xf96b697d7cb7938d525a2f31aaf161d0),
            ]
        );
        assert_eq!(together(&[]), []);
    }

    #[test]
    fn the_same_as_hash_key_of_text() {
        let keys = ["€uro", "device-42", "ключ", "\u{1F600}"];
        let mut out = Vec::new();
        hash_keys(keys.iter().map(|k| k.as_bytes()), &mut out);
        let want: Vec<HashKey> = keys.iter().map(|k| HashKey(hash_key(k))).collect();
        assert_eq!(out, want);
    }

    proptest! {
        #[test]
        fn any_keys_hash_as_md5_one_by_one(
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..50)
        ) {
            prop_assert_eq!(together(&keys), one_by_one(&keys));
        }
    }
}
