//! Prediction ids: the sequence number that names a ring slot, hidden by a
//! keyed permutation, plus a random nonce that proves the id was issued.

use uuid::Uuid;

/// Bits of sequence number an id carries (enough for a million predictions a
/// second for 36,000 years).
pub(super) const SEQ_BITS: u32 = 60;
/// Random bits an id carries: a guessed id that names a live slot still has
/// to match its nonce, a 1 in 2⁶² chance.
pub(super) const NONCE_BITS: u32 = 62;
pub(super) const NONCE_MASK: u64 = (1 << NONCE_BITS) - 1;
/// Feistel rounds of the sequence-number permutation.
const ROUNDS: usize = 4;
const HALF_BITS: u32 = SEQ_BITS / 2;
const HALF_MASK: u64 = (1 << HALF_BITS) - 1;

/// Issues and reads prediction ids.
///
/// An id is an RFC 9562 version-8 ("custom") UUID: 60 bits of sequence
/// number and 62 random bits (the nonce), around the 6 version and variant
/// bits. The sequence number finds the prediction's slot in the ring; the
/// nonce, stored in the slot, proves the id was issued. (An evicted
/// prediction's id is refused before its slot is read: its sequence number
/// is outside the remembered range.)
///
/// The sequence number goes through a keyed permutation (a 4-round Feistel
/// network over two 30-bit halves, keys drawn at start-up), so ids do not
/// show how many predictions were made, or were made between two ids, as a
/// random (v4) UUID did not. This hides a count; it is not what makes ids
/// unguessable: that is the nonce.
pub(super) struct IdCodec {
    keys: [u64; ROUNDS],
}

impl IdCodec {
    pub(super) fn new() -> Self {
        Self {
            keys: rand::random(),
        }
    }

    /// The Feistel round function: 30 well-mixed bits of `half` and a key.
    fn round(&self, round: usize, half: u64) -> u64 {
        splitmix64(half ^ self.keys[round]) & HALF_MASK
    }

    /// A bijection on 60-bit numbers.
    fn permute(&self, seq: u64) -> u64 {
        let (mut l, mut r) = (seq >> HALF_BITS, seq & HALF_MASK);
        for k in 0..ROUNDS {
            (l, r) = (r, l ^ self.round(k, r));
        }
        (l << HALF_BITS) | r
    }

    /// The inverse of [`IdCodec::permute`].
    fn unpermute(&self, value: u64) -> u64 {
        let (mut l, mut r) = (value >> HALF_BITS, value & HALF_MASK);
        for k in (0..ROUNDS).rev() {
            (l, r) = (r ^ self.round(k, l), l);
        }
        (l << HALF_BITS) | r
    }

    /// The id of prediction `seq` (< 2⁶⁰) with random `nonce` (< 2⁶²).
    pub(super) fn encode(&self, seq: u64, nonce: u64) -> Uuid {
        let p = self.permute(seq);
        // UUID bit layout: 48 bits | version (4) | 12 bits | variant (2) | 62 bits.
        let high = ((p >> 12) << 16) | (0x8 << 12) | (p & 0xfff);
        let low = (0b10 << 62) | (nonce & NONCE_MASK);
        Uuid::from_u64_pair(high, low)
    }

    /// `(sequence number, nonce)` of an id this codec could have issued.
    pub(super) fn decode(&self, id: Uuid) -> Option<(u64, u64)> {
        if id.get_version_num() != 8 || id.get_variant() != uuid::Variant::RFC4122 {
            return None;
        }
        let (high, low) = id.as_u64_pair();
        let p = ((high >> 16) << 12) | (high & 0xfff);
        Some((self.unpermute(p), low & NONCE_MASK))
    }
}

/// SplitMix64's finaliser: every input bit affects every output bit.
fn splitmix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_8_uuids_that_round_trip() {
        let codec = IdCodec::new();
        let mut rng = rand::thread_rng();
        let mut seen = std::collections::HashSet::new();
        let seqs = (0..1000u64).chain([(1 << SEQ_BITS) - 1, 1 << 40, 12_345_678_901]);
        for seq in seqs {
            let nonce = rand::Rng::gen::<u64>(&mut rng) & NONCE_MASK;
            let id = codec.encode(seq, nonce);
            assert_eq!(id.get_version_num(), 8);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(codec.decode(id), Some((seq, nonce)));
            assert!(seen.insert(codec.permute(seq)), "permutation collides");
        }
        // Another store's keys read the same id as another prediction.
        let other = IdCodec::new();
        assert_ne!(other.decode(codec.encode(7, 1)), Some((7, 1)));
        // Version 4 (or anything not issued as version 8) is never read.
        assert_eq!(codec.decode(Uuid::new_v4()), None);
    }

    #[test]
    fn ids_do_not_show_the_prediction_count() {
        let codec = IdCodec::new();
        // Consecutive sequence numbers land far apart: on average half of
        // the 60 permuted bits differ between neighbours.
        let flipped: u32 = (0..1000u64)
            .map(|s| (codec.permute(s) ^ codec.permute(s + 1)).count_ones())
            .sum();
        let mean = f64::from(flipped) / 1000.0;
        assert!((25.0..35.0).contains(&mean), "mean bits flipped {mean}");
    }
}
