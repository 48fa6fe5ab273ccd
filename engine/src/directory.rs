//! The name directory of one shard: the names whose home this shard is
//! (`home_shard(name)`), each reserved while its worker starts and then
//! bound to the worker, wherever it was placed.
//!
//! Starting a named worker reserves its name here first, so that two starts
//! of one name cannot both succeed; the start then binds the name to the new
//! worker, or drops the reservation if it failed. Stopping releases the name
//! only if it is still bound to the worker that stops (a newer worker may
//! have taken it since).

use std::collections::HashMap;
use std::sync::Arc;

use crate::{Error, Result, WorkerRef};

/// The directory entry of a name.
enum Binding {
    /// A start is in progress.
    Reserved,
    /// The name's worker.
    Bound(WorkerRef),
}

/// Names whose home is one shard.
#[derive(Default)]
pub(crate) struct Directory {
    names: HashMap<Arc<str>, Binding>,
}

impl Directory {
    /// Reserves `name` for a worker about to start; fails if it is taken.
    pub(crate) fn reserve(&mut self, name: Arc<str>) -> Result<()> {
        if self.names.contains_key(&name) {
            return Err(Error::NameTaken(name.to_string()));
        }
        self.names.insert(name, Binding::Reserved);
        Ok(())
    }

    /// Binds a reserved `name` to the worker that was started, or frees it
    /// if the start failed (`r` is `None`). Returns `r`.
    pub(crate) fn bind(&mut self, name: Arc<str>, r: Option<WorkerRef>) -> Option<WorkerRef> {
        match r {
            Some(r) => {
                self.names.insert(name, Binding::Bound(r));
            }
            None => {
                self.names.remove(&name);
            }
        }
        r
    }

    /// Frees `name` if it is still bound to `r`.
    pub(crate) fn release(&mut self, name: &str, r: WorkerRef) {
        if self.lookup(name) == Some(r) {
            self.names.remove(name);
        }
    }

    /// The worker `name` is bound to (a reserved name has none yet).
    pub(crate) fn lookup(&self, name: &str) -> Option<WorkerRef> {
        match self.names.get(name) {
            Some(Binding::Bound(r)) => Some(*r),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_reserved_then_bound_and_taken_once() {
        let mut names = Directory::default();
        names.reserve("greeter".into()).unwrap();
        assert_eq!(names.lookup("greeter"), None, "reserved is not bound");
        let taken = names.reserve("greeter".into()).unwrap_err();
        assert!(matches!(taken, Error::NameTaken(n) if n == "greeter"));
        assert_eq!(
            names.bind("greeter".into(), Some(WorkerRef::test(1))),
            Some(WorkerRef::test(1))
        );
        assert_eq!(names.lookup("greeter"), Some(WorkerRef::test(1)));
        assert!(names.reserve("greeter".into()).is_err(), "bound is taken");
    }

    #[test]
    fn a_failed_start_frees_its_reservation() {
        let mut names = Directory::default();
        names.reserve("greeter".into()).unwrap();
        assert_eq!(names.bind("greeter".into(), None), None);
        names.reserve("greeter".into()).unwrap();
    }

    #[test]
    fn release_frees_only_the_worker_it_names() {
        let mut names = Directory::default();
        names.reserve("greeter".into()).unwrap();
        names.bind("greeter".into(), Some(WorkerRef::test(2)));
        names.release("greeter", WorkerRef::test(1));
        assert_eq!(names.lookup("greeter"), Some(WorkerRef::test(2)), "a newer owner");
        names.release("greeter", WorkerRef::test(2));
        assert_eq!(names.lookup("greeter"), None);
        names.reserve("greeter".into()).unwrap();
    }
}
