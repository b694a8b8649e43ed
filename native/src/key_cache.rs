//! The key classifier's answers, remembered by a key's exact bytes.
//!
//! Keys come from senders, so the table is built to stay cheap whatever they send: fixed size
//! (8,192 slots, at most 6,144 keys and 256 KiB of key bytes), the hash seeded per process and
//! its slot taken from the hash's top bits (a sender cannot aim keys at one slot), at most 32
//! probes per look-up (past that a key is simply not remembered), and a hit only on equal bytes
//! (a hash collision cannot borrow another key's answer).

use std::hash::BuildHasher;

const SLOTS: usize = 8192;
const SLOT_BITS: u32 = SLOTS.trailing_zeros();
const MAX_KEYS: usize = SLOTS * 3 / 4;
const MAX_PROBES: usize = 32;
const MAX_KEY: usize = 512;
const ARENA: usize = 262_144;

#[derive(Clone, Copy, Default)]
struct Slot {
    hash: u64, // 0: empty
    offset: u32,
    length: u16,
    answer: bool,
}

pub struct KeyCache {
    seed: u64,
    slots: Vec<Slot>,
    arena: Vec<u8>,
    count: usize,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyCache {
    pub fn new() -> KeyCache {
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x6e68_6921u64);
        KeyCache { seed, slots: vec![Slot::default(); SLOTS], arena: Vec::new(), count: 0 }
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        let mut h = self.seed ^ 0xcbf2_9ce4_8422_2325;
        for &b in key {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h | 1
    }

    #[inline]
    fn first_slot(hash: u64) -> usize {
        (hash >> (64 - SLOT_BITS)) as usize
    }

    /// The answer remembered for `key`, if any.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<bool> {
        let h = self.hash(key);
        let mut i = Self::first_slot(h);
        for _ in 0..MAX_PROBES {
            let slot = &self.slots[i];
            if slot.hash == 0 {
                return None;
            }
            if slot.hash == h && self.stored(slot) == key {
                return Some(slot.answer);
            }
            i = (i + 1) & (SLOTS - 1);
        }
        None
    }

    fn stored(&self, slot: &Slot) -> &[u8] {
        &self.arena[slot.offset as usize..slot.offset as usize + usize::from(slot.length)]
    }

    /// Remembers `answer` for `key` while there is room (and a free slot within the probes).
    pub fn put(&mut self, key: &[u8], answer: bool) {
        if key.len() > MAX_KEY || self.count >= MAX_KEYS || self.arena.len() + key.len() > ARENA {
            return;
        }
        let h = self.hash(key);
        let mut i = Self::first_slot(h);
        for _ in 0..MAX_PROBES {
            if self.slots[i].hash == 0 {
                self.slots[i] = Slot { hash: h, offset: self.arena.len() as u32, length: key.len() as u16, answer };
                self.arena.extend_from_slice(key);
                self.count += 1;
                return;
            }
            if self.slots[i].hash == h && self.stored(&self.slots[i]) == key {
                return;
            }
            i = (i + 1) & (SLOTS - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_kept_by_exact_bytes_and_bounded() {
        let mut cache = KeyCache::new();
        cache.put(b"password", true);
        cache.put(b"service.name", false);
        assert_eq!(cache.get(b"password"), Some(true));
        assert_eq!(cache.get(b"service.name"), Some(false));
        assert_eq!(cache.get(b"Password"), None);
        for i in 0..10_000u32 {
            cache.put(format!("k{i}").as_bytes(), i % 2 == 0);
        }
        assert!(cache.count <= MAX_KEYS && cache.arena.len() <= ARENA);
        assert_eq!(cache.get(b"password"), Some(true));
        cache.put(&[b'x'; MAX_KEY + 1], true);
        assert_eq!(cache.get(&[b'x'; MAX_KEY + 1]), None);
    }
}
