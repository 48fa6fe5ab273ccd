//! Counts of accepted plain messages that never reached a mailbox, per
//! reason: the report a sender gets for a `send` whose failure was found
//! after it returned `Ok` (on another shard, after a node's inbox, at a
//! remote node), and of those whose fate nobody knows (in flight on a link
//! that closed).

use crate::Error;

/// Plain messages (not asks: those get the error) that were accepted and
/// then dropped, by reason; see [`NodeHandle::dropped`](crate::NodeHandle::dropped).
///
/// Every accepted plain send is either handled or counted here, exactly once
/// — except those counted `in_doubt`, which may have been handled as well.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dropped {
    /// The receiver's mailbox was full.
    pub mailbox_full: u64,
    /// No live worker had that name or reference (it stopped, or never was).
    pub no_such_worker: u64,
    /// Another node could not be reached, or its link went down.
    pub no_route: u64,
    /// Any other reason (a remote node refused it for a reason of its own).
    pub other: u64,
    /// Sent to another node on a link that closed before the node settled
    /// them: delivered or not, nobody knows (delivery is at most once; the
    /// link protocol has no retransmission).
    #[serde(default)]
    pub in_doubt: u64,
}

impl Dropped {
    /// Counts one message dropped because of `why`.
    pub fn count(&mut self, why: &Error) {
        let counter = match why {
            Error::MailboxFull(_) => &mut self.mailbox_full,
            Error::NoSuchWorker(_) => &mut self.no_such_worker,
            Error::NoRoute(_) | Error::ConnectionLost(_) => &mut self.no_route,
            _ => &mut self.other,
        };
        *counter += 1;
    }

    /// Counts `sends` messages whose fate is unknown (see
    /// [`in_doubt`](Self::in_doubt)).
    pub fn count_in_doubt(&mut self, sends: u64) {
        self.in_doubt += sends;
    }

    /// All dropped messages, whatever the reason, those in doubt included.
    pub fn total(&self) -> u64 {
        self.mailbox_full + self.no_such_worker + self.no_route + self.other + self.in_doubt
    }
}

impl std::ops::AddAssign for Dropped {
    fn add_assign(&mut self, other: Dropped) {
        self.mailbox_full += other.mailbox_full;
        self.no_such_worker += other.no_such_worker;
        self.no_route += other.no_route;
        self.other += other.other;
        self.in_doubt += other.in_doubt;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_counter_and_the_total_sums_them() {
        let mut d = Dropped::default();
        d.count(&Error::MailboxFull("w".into()));
        d.count(&Error::MailboxFull("w".into()));
        d.count(&Error::NoSuchWorker("w".into()));
        d.count(&Error::ConnectionLost("n".into()));
        d.count(&Error::NodeStopped);
        d.count_in_doubt(3);
        let expected = Dropped {
            mailbox_full: 2,
            no_such_worker: 1,
            no_route: 1,
            other: 1,
            in_doubt: 3,
        };
        assert_eq!(d, expected);
        let mut sum = d;
        sum += d;
        assert_eq!(sum.total(), 16);
    }
}
