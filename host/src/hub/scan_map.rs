//! A map for the registry's many small collections: the members of a
//! topic group, a key's groups, a connection's subscriptions. Most hold one
//! to a few entries, and there is one of each per subscription, so a hash
//! table each (an allocation on first insert, a keyed hash per lookup) was
//! most of what a subscribe cost the registry. A `ScanMap` is a vector,
//! scanned while it is small and indexed by a hash map once it grows past
//! [`SCAN`], so a large one (a hot key's thousands of subscribers) still
//! finds an entry in constant time.
//!
//! Removal swaps the last entry into the hole: order is not kept.

use std::{borrow::Borrow, hash::Hash};

use super::hashing::HashMap;

/// Entries found by scanning; past this the map keeps an index.
const SCAN: usize = 16;

pub(super) struct ScanMap<K, V> {
    entries: Vec<(K, V)>,
    /// Where each key is in `entries`, once there are more than [`SCAN`].
    index: Option<HashMap<K, usize>>,
}

impl<K, V> Default for ScanMap<K, V> {
    fn default() -> Self {
        ScanMap {
            entries: Vec::new(),
            index: None,
        }
    }
}

impl<K: Hash + Eq + Clone, V> ScanMap<K, V> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position<Q>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| k.borrow() == key),
        }
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.position(key).is_some()
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.position(key).map(|i| &self.entries[i].1)
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.position(key).map(|i| &mut self.entries[i].1)
    }

    /// The value under `key`, inserted by `make` if there is none.
    pub fn get_or_insert_with(&mut self, key: &K, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.position(key) {
            Some(i) => i,
            None => self.push(key.clone(), make()),
        };
        &mut self.entries[i].1
    }

    /// Insert `value` under `key` unless the key is there; whether it was
    /// inserted.
    pub fn insert_new(&mut self, key: K, value: V) -> bool {
        if self.position(&key).is_some() {
            return false;
        }
        self.push(key, value);
        true
    }

    fn push(&mut self, key: K, value: V) -> usize {
        let at = self.entries.len();
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), at);
        }
        self.entries.push((key, value));
        if self.index.is_none() && self.entries.len() > SCAN {
            let index = self.entries.iter().enumerate();
            self.index = Some(index.map(|(i, (k, _))| (k.clone(), i)).collect());
        }
        at
    }

    /// Remove `key`; its entry, if it was there.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let at = self.position(key)?;
        let removed = self.entries.swap_remove(at);
        if let Some(index) = &mut self.index {
            index.remove(key);
            if let Some((moved, _)) = self.entries.get(at) {
                index.insert(moved.clone(), at);
            }
        }
        Some(removed)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
}

impl<K, V> IntoIterator for ScanMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanned_and_indexed_maps_agree_with_a_hash_map() {
        // Insert, look up and remove across the switch to an index, with
        // removals from the middle (swaps) and re-inserts.
        let mut map: ScanMap<String, u32> = ScanMap::default();
        let mut model: HashMap<String, u32> = HashMap::default();
        let key = |i: u32| format!("k{}", (i * 7) % 40);
        for i in 0..400u32 {
            let k = key(i);
            match i % 5 {
                0..=2 => {
                    let inserted = map.insert_new(k.clone(), i);
                    assert_eq!(inserted, !model.contains_key(&k));
                    model.entry(k).or_insert(i);
                }
                3 => assert_eq!(map.remove(k.as_str()).map(|(_, v)| v), model.remove(&k)),
                _ => *map.get_or_insert_with(&k, || i) += 1,
            }
            if i % 5 == 4 {
                *model.entry(key(i)).or_insert(i) += 1;
            }
            assert_eq!(map.len(), model.len());
            for (k, v) in &model {
                assert_eq!(map.get(k.as_str()), Some(v), "step {i}, key {k}");
            }
        }
        assert!(map.index.is_some(), "the map grew past SCAN");
        let mut all: Vec<(String, u32)> = map.into_iter().collect();
        let mut want: Vec<(String, u32)> = model.into_iter().collect();
        all.sort();
        want.sort();
        assert_eq!(all, want);
    }
}
