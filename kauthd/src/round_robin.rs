//! Items waiting per key, served round-robin across the keys and in
//! arrival order within a key: a key with 2,000 items waiting gets one
//! turn per round like a key with one. The argon2 queue and the request
//! workers both serve their waiters this way.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

#[derive(Debug)]
pub struct RoundRobin<K, V> {
    /// Keys with items waiting, in the order they get their next turn.
    rounds: VecDeque<K>,
    /// Each key's waiting items, in arrival order.
    waiting: HashMap<K, VecDeque<V>>,
    len: usize,
}

impl<K, V> Default for RoundRobin<K, V> {
    fn default() -> Self {
        RoundRobin {
            rounds: VecDeque::new(),
            waiting: HashMap::new(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, V> RoundRobin<K, V> {
    pub fn push(&mut self, key: K, item: V) {
        match self.waiting.entry(key) {
            Entry::Occupied(mut items) => items.get_mut().push_back(item),
            Entry::Vacant(slot) => {
                self.rounds.push_back(slot.key().clone());
                slot.insert(VecDeque::from([item]));
            }
        }
        self.len += 1;
    }

    /// The first item of the key whose turn it is; the key goes to the
    /// back of the round while it has more waiting.
    pub fn pop(&mut self) -> Option<V> {
        while let Some(key) = self.rounds.pop_front() {
            let Some(items) = self.waiting.get_mut(&key) else {
                continue;
            };
            let Some(item) = items.pop_front() else {
                self.waiting.remove(&key);
                continue;
            };
            if items.is_empty() {
                self.waiting.remove(&key);
            } else {
                self.rounds.push_back(key);
            }
            self.len -= 1;
            return Some(item);
        }
        None
    }

    /// The item pushed last under `key`, taken back.
    pub fn take_last(&mut self, key: &K) -> Option<V> {
        let items = self.waiting.get_mut(key)?;
        let item = items.pop_back()?;
        if items.is_empty() {
            self.waiting.remove(key);
            self.rounds.retain(|k| k != key);
        }
        self.len -= 1;
        Some(item)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_take_turns_and_each_key_keeps_its_order() {
        let mut queue = RoundRobin::default();
        for item in ["a1", "a2", "a3"] {
            queue.push("a", item);
        }
        queue.push("b", "b1");
        queue.push("c", "c1");
        queue.push("b", "b2");
        let order: Vec<_> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(order, ["a1", "b1", "c1", "a2", "b2", "a3"]);
        assert!(queue.is_empty());
    }

    #[test]
    fn taking_back_the_last_item_leaves_the_rest_in_order() {
        let mut queue = RoundRobin::default();
        queue.push("a", 1);
        queue.push("b", 2);
        assert_eq!(queue.take_last(&"b"), Some(2));
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.pop(), Some(1));
        assert_eq!(queue.pop(), None);
    }
}
