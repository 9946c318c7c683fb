//! Little-endian bitstreams of 32-bit words, as the quantized Hugging Face formats pack them:
//! value `i` of a `b`-bit stream occupies bits `[b·i, b·i + b)` of the concatenation of its
//! words (word `j` holding stream bits `[32·j, 32·j + 32)`), so a value may straddle two words.
//!
//! The words are read from raw little-endian bytes (safetensors data is not aligned), and the
//! word sequence may be strided (a column of a row-major `[rows, cols]` I32 tensor).

/// Word `j` of a stream whose words lie `stride` words apart starting at word `start` of
/// `bytes` (little-endian u32s). Callers check the bounds at load time.
#[inline]
pub fn word(bytes: &[u8], start: usize, stride: usize, j: usize) -> u32 {
    let at = (start + j * stride) * 4;
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The `bits`-bit unsigned value at stream bit `pos` (1 ≤ `bits` ≤ 8 — at most two words).
#[inline]
pub fn value(bytes: &[u8], start: usize, stride: usize, pos: usize, bits: u32) -> u32 {
    let (j, shift) = (pos / 32, (pos % 32) as u32);
    let mask = (1u32 << bits) - 1;
    let lo = word(bytes, start, stride, j) >> shift;
    if shift + bits <= 32 {
        lo & mask
    } else {
        (lo | (word(bytes, start, stride, j + 1) << (32 - shift))) & mask
    }
}

/// Words needed for `n` values of `bits` bits.
pub fn words_for(n: usize, bits: usize) -> usize {
    (n * bits).div_ceil(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pack `vals` (each < 2^bits) value by value, bit by bit (a second, naive packer).
    fn pack(vals: &[u32], bits: u32) -> Vec<u8> {
        let mut words = vec![0u32; words_for(vals.len(), bits as usize)];
        for (i, &v) in vals.iter().enumerate() {
            for b in 0..bits {
                let pos = i * bits as usize + b as usize;
                words[pos / 32] |= ((v >> b) & 1) << (pos % 32);
            }
        }
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn every_width_round_trips_including_straddling_values() {
        for bits in 1..=8u32 {
            let vals: Vec<u32> = (0..97u32).map(|i| (i.wrapping_mul(2654435761u32) >> 7) & ((1 << bits) - 1)).collect();
            let bytes = pack(&vals, bits);
            for (i, &v) in vals.iter().enumerate() {
                assert_eq!(value(&bytes, 0, 1, i * bits as usize, bits), v, "bits {bits} value {i}");
            }
        }
    }

    #[test]
    fn strided_words_are_a_column() {
        // A [3, 2] word matrix; column 1 is words 1, 3, 5.
        let words: [u32; 6] = [0, 0xffff_ffff, 0, 0x0000_0001, 0, 0x0000_0001];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(word(&bytes, 1, 2, 1), 1);
        // 3-bit value 10 straddles words 0 and 1 of the column: bits 30, 31 (1, 1) and 32 (1).
        assert_eq!(value(&bytes, 1, 2, 30, 3), 0b111);
        // Value at bit 62: bits 30, 31 of word 1 (0, 0) and bit 0 of word 2 (1).
        assert_eq!(value(&bytes, 1, 2, 62, 3), 0b100);
    }
}
