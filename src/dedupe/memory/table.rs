//! A fixed-capacity hash table of digests and times: open addressing with linear probing and
//! backward-shift deletion. Removing leaves no tombstones, so the table never needs a rehash, and
//! its slots are allocated once, as zeroed memory that becomes resident only as it is used. The
//! digests are keyed hashes already, so they index the table directly.

use super::{Digest, Millis};

/// Slots per entry, so probe sequences stay short (load factor at most 0.75).
const SLOTS_PER_ENTRY: f64 = 4.0 / 3.0;
/// Marks a free slot. A real digest equal to it is stored as [`ZERO_STAND_IN`].
const EMPTY: Digest = [0; 4];
const ZERO_STAND_IN: Digest = [0, 0, 0, 1];

/// A digest's four words, then its time; all zero is a free slot. A plain array of integers, so
/// the table is allocated zeroed rather than written slot by slot.
type Slot = [u32; 5];

pub(super) struct Table {
    slots: Box<[Slot]>,
    len: usize,
}

fn digest_of(slot: &Slot) -> Digest {
    [slot[0], slot[1], slot[2], slot[3]]
}

fn slot(digest: Digest, at: Millis) -> Slot {
    [digest[0], digest[1], digest[2], digest[3], at]
}

fn stored(digest: Digest) -> Digest {
    if digest == EMPTY {
        ZERO_STAND_IN
    } else {
        digest
    }
}

impl Table {
    /// A table for at most `entries` digests.
    pub(super) fn with_capacity(entries: usize) -> Self {
        let slots = ((entries as f64 * SLOTS_PER_ENTRY) as usize).max(entries + 1);
        Self {
            slots: vec![[0u32; 5]; slots].into_boxed_slice(),
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn home(&self, digest: &Digest) -> usize {
        // Lemire's fast range reduction: the high bits of a 64×64-bit product.
        let bits = (u64::from(digest[0]) << 32) | u64::from(digest[1]);
        ((u128::from(bits) * self.slots.len() as u128) >> 64) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    /// The slot holding `digest`, or the free slot where it would go.
    fn probe(&self, digest: &Digest) -> (usize, bool) {
        let mut i = self.home(digest);
        loop {
            let found = digest_of(&self.slots[i]);
            if found == EMPTY {
                return (i, false);
            }
            if found == *digest {
                return (i, true);
            }
            i = self.next(i);
        }
    }

    pub(super) fn get(&self, digest: Digest) -> Option<Millis> {
        match self.probe(&stored(digest)) {
            (i, true) => Some(self.slots[i][4]),
            (_, false) => None,
        }
    }

    /// Inserts or updates. The caller keeps `len` below the capacity it asked for.
    pub(super) fn insert(&mut self, digest: Digest, at: Millis) {
        let digest = stored(digest);
        let (i, found) = self.probe(&digest);
        if !found {
            debug_assert!(self.len + 1 < self.slots.len(), "table over capacity");
            self.len += 1;
        }
        self.slots[i] = slot(digest, at);
    }

    /// Removes `digest` if it is there, shifting later entries of its probe run back.
    pub(super) fn remove(&mut self, digest: Digest) {
        let (mut hole, found) = self.probe(&stored(digest));
        if !found {
            return;
        }
        let mut j = hole;
        loop {
            j = self.next(j);
            let moving = digest_of(&self.slots[j]);
            if moving == EMPTY {
                break;
            }
            let home = self.home(&moving);
            // The entry at j may move into the hole only if its home is not cyclically
            // within (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
        }
        self.slots[hole] = [0; 5];
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A deterministic stream of digests, some with equal homes to force long probe runs.
    fn digests(n: u32) -> Vec<Digest> {
        (0..n)
            .map(|i| {
                let x = i.wrapping_mul(0x9E37_79B9);
                [if i % 7 == 0 { x & 0xFF } else { x }, 0, 0, i]
            })
            .collect()
    }

    #[test]
    fn behaves_like_a_map_under_random_inserts_and_removes() {
        let mut table = Table::with_capacity(500);
        let mut model: HashMap<Digest, Millis> = HashMap::new();
        let all = digests(2000);
        for (step, d) in all.iter().enumerate() {
            if model.len() < 500 {
                table.insert(*d, step as Millis);
                model.insert(*d, step as Millis);
            }
            if step % 3 == 0 {
                let victim = all[step / 2];
                table.remove(victim);
                model.remove(&victim);
            }
            assert_eq!(table.len(), model.len());
        }
        for d in &all {
            assert_eq!(table.get(*d), model.get(d).copied(), "{d:?}");
        }
    }

    #[test]
    fn the_empty_marker_is_a_storable_digest() {
        let mut table = Table::with_capacity(4);
        table.insert([0; 4], 7);
        assert_eq!(table.get([0; 4]), Some(7));
        table.remove([0; 4]);
        assert_eq!(table.get([0; 4]), None);
        assert_eq!(table.len(), 0);
    }
}
