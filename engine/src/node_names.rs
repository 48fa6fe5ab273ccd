//! Names of other nodes as small numbers, so that a [`WorkerRef`] of a
//! worker on another node stays a `Copy` value of 12 bytes: it holds the
//! number, and the name is looked up here when it is needed (to route a
//! send, to print the reference).
//!
//! The table is shared by every node of the process and only grows: a name
//! gets its number the first time a transport hands the engine a reference
//! to a worker of that node (a remote sender, a remote watch), and keeps it.
//! Node names come from authenticated peers, so the table stays as small as
//! the zone; it holds at most [`u16::MAX`] names, after which no further
//! node gets a number (and its workers' references cannot be made).
//!
//! [`WorkerRef`]: crate::WorkerRef

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

/// The number of a node name; 0 is never handed out (a [`WorkerRef`] with
/// node 0 is a worker of the node that made it).
///
/// [`WorkerRef`]: crate::WorkerRef
pub(crate) type NodeNumber = u16;

#[derive(Default)]
struct Table {
    /// Name of number `i + 1`.
    names: Vec<Arc<str>>,
    numbers: HashMap<Arc<str>, NodeNumber>,
}

static TABLE: LazyLock<RwLock<Table>> = LazyLock::new(RwLock::default);

/// The number of node `name`, given it now if it has none; `None` once the
/// table is full.
pub(crate) fn number_of(name: &str) -> Option<NodeNumber> {
    if let Some(&n) = read().numbers.get(name) {
        return Some(n);
    }
    let mut table = TABLE.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(&n) = table.numbers.get(name) {
        return Some(n);
    }
    let n = NodeNumber::try_from(table.names.len() + 1).ok()?;
    let name: Arc<str> = Arc::from(name);
    table.names.push(name.clone());
    table.numbers.insert(name, n);
    Some(n)
}

/// The name of node number `n`, if it was handed out.
pub(crate) fn name_of(n: NodeNumber) -> Option<Arc<str>> {
    let index = usize::from(n).checked_sub(1)?;
    read().names.get(index).cloned()
}

fn read() -> std::sync::RwLockReadGuard<'static, Table> {
    // The table is consistent after every statement: a panic elsewhere
    // while it was held leaves nothing half done.
    TABLE.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_keeps_its_number_and_the_number_finds_the_name() {
        let a = number_of("node-names-test-a").unwrap();
        let b = number_of("node-names-test-b").unwrap();
        assert_ne!(a, 0);
        assert_ne!(a, b);
        assert_eq!(number_of("node-names-test-a"), Some(a));
        assert_eq!(name_of(a).as_deref(), Some("node-names-test-a"));
        assert_eq!(name_of(0), None);
        assert_eq!(name_of(NodeNumber::MAX), None);
    }
}
