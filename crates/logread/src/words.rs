//! Eight bytes at a time: which bytes of a word equal a byte, or fall
//! below one. Text in logs has a quote, an escape or a delimiter every few
//! bytes, too often for a SIMD search's call and setup to pay; a word test
//! answers for eight bytes in a few instructions, in safe code. Bytes are
//! marked by the top bit of their place in the word.

/// The top bit of every byte of a word.
pub const TOPS: u64 = 0x8080_8080_8080_8080;
/// The low bit of every byte of a word: `ONES * b` repeats `b`.
const ONES: u64 = 0x0101_0101_0101_0101;

/// The eight bytes at `i` as a little-endian word (the first byte lowest),
/// if there are eight.
#[inline]
pub fn word_at(bytes: &[u8], i: usize) -> Option<u64> {
    let w: [u8; 8] = bytes.get(i..i + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(w))
}

/// A word with the top bit set of bytes of `w` that may equal `b`: the
/// lowest bit set marks exactly the first byte that does (a byte above it
/// may be marked without equalling `b`), and the word is zero when no
/// byte does.
#[inline]
pub fn bytes_equal(w: u64, b: u8) -> u64 {
    let x = w ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & TOPS
}

/// [`bytes_equal`] for bytes below `b` (at most 0x80): the lowest bit set
/// marks exactly the first such byte.
#[inline]
pub fn bytes_below(w: u64, b: u8) -> u64 {
    w.wrapping_sub(ONES * u64::from(b)) & !w & TOPS
}

/// The top bit of every byte of `w` that equals `b`, and no other bit
/// ([`bytes_equal`] marks only the first such byte exactly): no carry
/// crosses a byte, as seven-bit sums do not overflow one.
#[inline]
pub fn bytes_exactly(w: u64, b: u8) -> u64 {
    const LOWS: u64 = !TOPS;
    let x = w ^ (ONES * u64::from(b));
    !(((x & LOWS) + LOWS) | x) & TOPS
}

/// Whether two byte strings are equal, compared a word at a time and the
/// last few bytes one by one, without a call: for the short keys of a
/// record, calling `memcmp` cost more than the comparison.
#[inline]
pub fn slices_equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while let (Some(x), Some(y)) = (word_at(a, i), word_at(b, i)) {
        if x != y {
            return false;
        }
        i += 8;
    }
    a[i..].iter().zip(&b[i..]).all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal exactly when `==` says so: lengths around the word size,
    /// differences in any place, in the words or the tail.
    #[test]
    fn slices_equal_is_equality() {
        let mut rng = fastrand::Rng::with_seed(9);
        let mut equal = 0;
        for _ in 0..20_000 {
            let a: Vec<u8> = (0..rng.usize(0..20)).map(|_| rng.u8(b'a'..b'd')).collect();
            let mut b = a.clone();
            match rng.u8(..3) {
                0 if !b.is_empty() => {
                    let i = rng.usize(..b.len());
                    b[i] = rng.u8(b'a'..b'd');
                }
                1 => b.push(b'a'),
                _ => {}
            }
            assert_eq!(slices_equal(&a, &b), a == b, "{a:?} {b:?}");
            equal += usize::from(a == b);
        }
        assert!(equal > 5_000 && equal < 15_000, "{equal}");
    }

    /// Against the bytes themselves, for every byte value at every place:
    /// `bytes_exactly` marks exactly the equal bytes, `bytes_equal` and
    /// `bytes_below` exactly the first matching one.
    #[test]
    fn words_mark_what_the_bytes_hold() {
        let mut rng = fastrand::Rng::with_seed(8);
        for _ in 0..20_000 {
            let mut bytes = [0u8; 8];
            let b = rng.u8(..);
            for x in &mut bytes {
                // Often the byte itself or its neighbours, where carries go wrong.
                *x = match rng.u8(0..4) {
                    0 => b,
                    1 => b.wrapping_add(1),
                    2 => b.wrapping_sub(1),
                    _ => rng.u8(..),
                };
            }
            let w = u64::from_le_bytes(bytes);
            let top = |k: usize| 0x80u64 << (8 * k);
            let exact: u64 = (0..8).filter(|&k| bytes[k] == b).map(top).sum();
            assert_eq!(bytes_exactly(w, b), exact, "{bytes:?} {b}");
            let first = |m: u64| (m != 0).then(|| m.trailing_zeros() / 8);
            let first_eq = bytes.iter().position(|&x| x == b).map(|k| k as u32);
            assert_eq!(first(bytes_equal(w, b)), first_eq, "{bytes:?} {b}");
            let below = b.min(0x80);
            let first_below = bytes.iter().position(|&x| x < below).map(|k| k as u32);
            assert_eq!(
                first(bytes_below(w, below)),
                first_below,
                "{bytes:?} {below}"
            );
        }
    }
}
