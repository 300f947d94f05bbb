//! Sharding across replicas, the way kube-state-metrics does it: each of
//! `total` replicas, all given the same accounts, polls the accounts whose
//! name hashes to its `index`, so Prometheus adds the replicas up.

use serde::{Deserialize, Serialize};

/// This replica's share of the accounts (`shard.*`, `--shard.index`,
/// `--shard.total`). The default, 0 of 1, polls every account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shard {
    /// This replica's number, from 0 to `total` - 1.
    pub index: u32,
    /// How many replicas share the accounts.
    pub total: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, total: 1 }
    }
}

impl Shard {
    /// The shard that polls `account` among `total`: FNV-1a (64-bit) of the
    /// name's UTF-8 bytes, modulo `total`. FNV-1a is a fixed published
    /// function of the bytes alone (no seed, no word size or endianness),
    /// so every replica, on any platform and any version of Rust or of this
    /// program, agrees on it; std's `DefaultHasher` promises none of that.
    pub fn of(account: &str, total: u32) -> u32 {
        use std::hash::Hasher;
        let mut h = fnv::FnvHasher::default();
        h.write(account.as_bytes());
        (h.finish() % u64::from(total.max(1))) as u32
    }

    /// Whether this replica polls `account`.
    pub fn owns(&self, account: &str) -> bool {
        Shard::of(account, self.total) == self.index
    }

    /// More than one replica shares the accounts.
    pub fn is_sharded(&self) -> bool {
        self.total > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv_1a_64_of_the_name_bytes() {
        // Published FNV-1a 64 test vectors: if these move, replicas of
        // different versions would split the accounts differently.
        use std::hash::Hasher;
        for (text, want) in [
            ("", 0xcbf2_9ce4_8422_2325_u64),
            ("a", 0xaf63_dc4c_8601_ec8c),
            ("foobar", 0x8594_4171_f739_67e8),
        ] {
            let mut h = fnv::FnvHasher::default();
            h.write(text.as_bytes());
            assert_eq!(h.finish(), want, "{text}");
        }
        assert_eq!(
            Shard::of("foobar", 7),
            (0x8594_4171_f739_67e8_u64 % 7) as u32
        );
    }

    #[test]
    fn every_account_belongs_to_exactly_one_shard() {
        let names: Vec<String> = (0..1000).map(|i| format!("team-{i}")).collect();
        for total in 1..=5 {
            let mut counts = vec![0; total as usize];
            for n in &names {
                let owners: Vec<u32> = (0..total)
                    .filter(|&index| Shard { index, total }.owns(n))
                    .collect();
                assert_eq!(owners.len(), 1, "{n} among {total}");
                counts[owners[0] as usize] += 1;
            }
            // Roughly even: no shard gets less than half its fair share.
            let fair = names.len() / total as usize;
            assert!(counts.iter().all(|&c| c * 2 > fair), "{total}: {counts:?}");
        }
    }

    #[test]
    fn one_shard_polls_everything() {
        assert!(Shard::default().owns("anything"));
        assert!(!Shard::default().is_sharded());
    }
}
