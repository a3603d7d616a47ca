//! Replica assignment for new partitions: rack-aware and even. Brokers are ordered so that
//! consecutive brokers sit on different racks (when racks are set), each partition's replicas are
//! consecutive brokers in that order, and partitions start one broker further along, from a
//! per-topic offset, so leaders and replicas spread over the brokers.

use std::collections::BTreeMap;

/// A live broker, its rack and the incarnation it runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The broker id.
    pub id: i32,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Its registration's incarnation.
    pub incarnation: u64,
    /// Its registration's `started_empty`.
    pub started_empty: bool,
}

/// Brokers interleaved by rack: the first broker of each rack, then the second of each, and so
/// on (racks and brokers in id order; brokers without a rack form one group).
fn rack_alternating(brokers: &[Candidate]) -> Vec<i32> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for b in brokers {
        by_rack.entry(b.rack.as_deref()).or_default().push(b.id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut order = Vec::with_capacity(brokers.len());
    for i in 0..longest {
        order.extend(by_rack.values().filter_map(|ids| ids.get(i)));
    }
    order
}

/// Replicas for partitions `first..first + count`, `replication_factor` each, over `brokers`;
/// `offset` shifts where the first partition starts (a hash of the topic spreads topics). `None`
/// when there are fewer brokers than the replication factor.
pub fn assign(
    brokers: &[Candidate],
    first: i32,
    count: i32,
    replication_factor: usize,
    offset: usize,
) -> Option<Vec<Vec<i32>>> {
    if replication_factor == 0 || brokers.len() < replication_factor {
        return None;
    }
    let order = rack_alternating(brokers);
    let n = order.len();
    let assignment = (first..first + count)
        .map(|p| {
            let start = (offset + p as usize) % n;
            (0..replication_factor)
                .map(|r| order[(start + r) % n])
                .collect()
        })
        .collect();
    Some(assignment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(racks: &[(i32, Option<&str>)]) -> Vec<Candidate> {
        racks
            .iter()
            .map(|(id, rack)| Candidate {
                id: *id,
                rack: rack.map(str::to_string),
                incarnation: 0,
                started_empty: false,
            })
            .collect()
    }

    #[test]
    fn replicas_of_a_partition_are_on_distinct_racks_when_possible() {
        let b = brokers(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
            (6, Some("c")),
        ]);
        let rack = |id: i32| b.iter().find(|c| c.id == id).and_then(|c| c.rack.clone());
        let assignment = assign(&b, 0, 12, 3, 0).expect("enough brokers");
        for replicas in &assignment {
            let mut racks: Vec<_> = replicas.iter().map(|r| rack(*r)).collect();
            racks.sort();
            racks.dedup();
            assert_eq!(racks.len(), 3, "{replicas:?} spans three racks");
        }
    }

    #[test]
    fn leaders_and_replicas_spread_evenly() {
        let b = brokers(&[(1, None), (2, None), (3, None)]);
        let assignment = assign(&b, 0, 6, 2, 0).expect("enough brokers");
        let mut leaders = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for r in &assignment {
            *leaders.entry(r[0]).or_insert(0) += 1;
            for id in r {
                *replicas.entry(*id).or_insert(0) += 1;
            }
            assert_ne!(r[0], r[1], "distinct replicas");
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
        assert_eq!(replicas.values().copied().collect::<Vec<_>>(), [4, 4, 4]);
    }

    #[test]
    fn too_few_brokers_is_refused() {
        let b = brokers(&[(1, None), (2, None)]);
        assert_eq!(assign(&b, 0, 1, 3, 0), None);
        assert_eq!(assign(&b, 0, 1, 0, 0), None);
        assert_eq!(assign(&b, 3, 1, 1, 1), Some(vec![vec![1]]));
    }
}
