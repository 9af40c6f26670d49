//! Protobuf wire-format primitives: varints, field keys, length-delimited fields.

/// Wire type of varint fields.
pub(crate) const WIRE_VARINT: u8 = 0;
/// Wire type of 64-bit fields.
pub(crate) const WIRE_FIXED64: u8 = 1;
/// Wire type of length-delimited fields (strings, bytes, messages).
pub(crate) const WIRE_LEN: u8 = 2;
/// Wire type of 32-bit fields.
pub(crate) const WIRE_FIXED32: u8 = 5;

/// The one-byte key of field `number` (< 16) with `wire_type`.
pub(crate) const fn key(number: u8, wire_type: u8) -> u8 {
    (number << 3) | wire_type
}

/// Bytes a varint of `value` takes.
#[inline]
pub(crate) const fn varint_len(value: u64) -> usize {
    // 1 for 0..=127, 2 up to 14 bits, ..., 10 for 64 bits.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Bytes a length-delimited field with a one-byte key and `len` bytes of payload takes.
#[inline]
pub(crate) const fn len_field_size(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Appends `value` as a varint.
#[inline]
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Appends a length-delimited field with a one-byte key.
#[inline]
pub(crate) fn put_len_field(buf: &mut Vec<u8>, key: u8, payload: &[u8]) {
    buf.push(key);
    put_varint(buf, payload.len() as u64);
    buf.extend_from_slice(payload);
}

/// Why a protobuf body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ended inside a field.
    #[error("truncated at byte {offset}")]
    Truncated {
        /// Where the input ran out, from the start of the protobuf body.
        offset: usize,
    },
    /// A varint ran past 10 bytes or past 64 bits.
    #[error("varint overflows 64 bits at byte {offset}")]
    VarintOverflow {
        /// Where the varint starts.
        offset: usize,
    },
    /// A wire type that protobuf does not define, or a (deprecated) group.
    #[error("unsupported wire type {wire_type} at byte {offset}")]
    UnsupportedWireType {
        /// The wire type.
        wire_type: u8,
        /// Where the field starts.
        offset: usize,
    },
    /// A known field carried with the wrong wire type.
    #[error("field {field} has wire type {wire_type} at byte {offset}")]
    WrongWireType {
        /// The field number.
        field: u64,
        /// The wire type found.
        wire_type: u8,
        /// Where the field starts.
        offset: usize,
    },
}

/// A cursor over a protobuf body. Offsets in errors are relative to `base`, the body's start.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Position of the cursor from the start of the whole body.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        let start = self.pos;
        match self.buf.get(start) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                return Ok(u64::from(b));
            }
            None => {
                return Err(WireError::Truncated {
                    offset: self.base + start,
                });
            }
            Some(_) => {}
        }
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(start + i) else {
                return Err(WireError::Truncated {
                    offset: self.base + self.buf.len(),
                });
            };
            // The tenth byte may carry only the 64th bit.
            if i == 9 && b > 1 {
                break;
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos = start + i + 1;
                return Ok(value);
            }
        }
        Err(WireError::VarintOverflow {
            offset: self.base + start,
        })
    }

    /// Reads a field key: (field number, wire type).
    #[inline]
    pub(crate) fn field_key(&mut self) -> Result<(u64, u8), WireError> {
        let key = self.varint()?;
        Ok((key >> 3, (key & 7) as u8))
    }

    /// Reads the payload of a length-delimited field; returns its range within this reader's buffer.
    #[inline]
    pub(crate) fn len_delimited(&mut self) -> Result<std::ops::Range<usize>, WireError> {
        let len = self.varint()?;
        let start = self.pos;
        let remaining = (self.buf.len() - start) as u64;
        if len > remaining {
            return Err(WireError::Truncated {
                offset: self.base + self.buf.len(),
            });
        }
        self.pos = start + len as usize;
        Ok(start..self.pos)
    }

    /// Skips the payload of a field of `wire_type` that this decoder does not use.
    pub(crate) fn skip(&mut self, wire_type: u8, field_offset: usize) -> Result<(), WireError> {
        let skip_fixed = |reader: &mut Self, n: usize| {
            if reader.buf.len() - reader.pos < n {
                return Err(WireError::Truncated {
                    offset: reader.base + reader.buf.len(),
                });
            }
            reader.pos += n;
            Ok(())
        };
        match wire_type {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_FIXED64 => skip_fixed(self, 8),
            WIRE_LEN => self.len_delimited().map(drop),
            WIRE_FIXED32 => skip_fixed(self, 4),
            _ => Err(WireError::UnsupportedWireType {
                wire_type,
                offset: field_offset,
            }),
        }
    }

    /// The bytes of `range`, as returned by [`Reader::len_delimited`].
    pub(crate) fn slice(&self, range: std::ops::Range<usize>) -> &'a [u8] {
        &self.buf[range]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_and_sizes() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, value);
            assert_eq!(buf.len(), varint_len(value), "{value}");
            let mut reader = Reader::new(&buf, 0);
            assert_eq!(reader.varint(), Ok(value));
            assert!(reader.is_empty());
        }
    }

    #[test]
    fn varint_rejects_overflow_and_truncation() {
        let eleven = [0xff; 11];
        assert_eq!(
            Reader::new(&eleven, 0).varint(),
            Err(WireError::VarintOverflow { offset: 0 })
        );
        // Ten bytes whose last carries more than the 64th bit.
        let mut too_big = [0xff; 10];
        too_big[9] = 0x02;
        assert_eq!(
            Reader::new(&too_big, 0).varint(),
            Err(WireError::VarintOverflow { offset: 0 })
        );
        assert_eq!(
            Reader::new(&[0x80, 0x80], 5).varint(),
            Err(WireError::Truncated { offset: 7 })
        );
        assert_eq!(
            Reader::new(&[], 3).varint(),
            Err(WireError::Truncated { offset: 3 })
        );
    }

    #[test]
    fn len_delimited_refuses_lengths_past_the_end() {
        let buf = [0x05, 1, 2];
        assert!(matches!(
            Reader::new(&buf, 0).len_delimited(),
            Err(WireError::Truncated { .. })
        ));
        // A length near u64::MAX must not overflow the bounds arithmetic.
        let mut huge = Vec::new();
        put_varint(&mut huge, u64::MAX);
        assert!(Reader::new(&huge, 0).len_delimited().is_err());
    }
}
