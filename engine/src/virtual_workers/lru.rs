//! An intrusive least-recently-used list over the entries of a `slab`: the
//! links live in the entries, so touching an entry is a few stores and no
//! allocation. The registry keeps one list per kind of its active workers,
//! most recently used first.

use slab::Slab;

const NIL: u32 = u32::MAX;

/// The links an entry carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Links {
    prev: u32,
    next: u32,
    linked: bool,
}

impl Default for Links {
    fn default() -> Self {
        Links {
            prev: NIL,
            next: NIL,
            linked: false,
        }
    }
}

/// An entry that can be on a list.
pub(crate) trait Linked {
    fn links(&mut self) -> &mut Links;
}

/// A list of entries of one slab, most recently used at the front.
#[derive(Debug)]
pub(crate) struct Lru {
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for Lru {
    fn default() -> Self {
        Lru {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

fn links<T: Linked>(slab: &mut Slab<T>, i: u32) -> &mut Links {
    // Only indexes of live entries are ever linked.
    slab[i as usize].links()
}

impl Lru {
    /// How many entries are on the list.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The least recently used entry.
    pub(crate) fn back(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// Puts entry `i` at the front (moving it if it is on the list).
    pub(crate) fn touch<T: Linked>(&mut self, slab: &mut Slab<T>, i: u32) {
        if self.head == i {
            return;
        }
        self.unlink(slab, i);
        let old_head = self.head;
        *links(slab, i) = Links {
            prev: NIL,
            next: old_head,
            linked: true,
        };
        if old_head != NIL {
            links(slab, old_head).prev = i;
        } else {
            self.tail = i;
        }
        self.head = i;
        self.len += 1;
    }

    /// Takes entry `i` off the list, if it is on it.
    pub(crate) fn unlink<T: Linked>(&mut self, slab: &mut Slab<T>, i: u32) {
        let Links { prev, next, linked } = *links(slab, i);
        if !linked {
            return;
        }
        if prev != NIL {
            links(slab, prev).next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            links(slab, next).prev = prev;
        } else {
            self.tail = prev;
        }
        *links(slab, i) = Links::default();
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct E(Links);
    impl Linked for E {
        fn links(&mut self) -> &mut Links {
            &mut self.0
        }
    }

    fn order(lru: &Lru, slab: &mut Slab<E>) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = lru.back();
        while let Some(i) = at {
            out.push(i);
            let prev = links(slab, i).prev;
            at = (prev != NIL).then_some(prev);
        }
        out
    }

    #[test]
    fn the_least_recently_touched_is_at_the_back() {
        let mut slab = Slab::new();
        let ids: Vec<u32> = (0..4).map(|_| slab.insert(E::default()) as u32).collect();
        let mut lru = Lru::default();
        for &i in &ids {
            lru.touch(&mut slab, i);
        }
        assert_eq!(order(&lru, &mut slab), vec![0, 1, 2, 3]);
        lru.touch(&mut slab, 0);
        lru.touch(&mut slab, 2);
        assert_eq!(order(&lru, &mut slab), vec![1, 3, 0, 2]);
        lru.unlink(&mut slab, 3);
        lru.unlink(&mut slab, 3);
        assert_eq!((order(&lru, &mut slab), lru.len()), (vec![1, 0, 2], 3));
        lru.unlink(&mut slab, 2);
        lru.unlink(&mut slab, 1);
        lru.unlink(&mut slab, 0);
        assert_eq!((lru.back(), lru.len()), (None, 0));
        lru.touch(&mut slab, 3);
        assert_eq!(order(&lru, &mut slab), vec![3]);
    }
}
