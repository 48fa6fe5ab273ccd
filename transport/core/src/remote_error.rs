//! Engine errors on the wire: how a failed ask or remote operation travels
//! back as a `reply err` envelope (an [`ErrorCode`] plus a text), and how the
//! asking node turns it back into the engine's [`Error`].
//!
//! The text carries what the code alone does not: a duration in milliseconds
//! for a timeout, `size max` for an oversized message, a reason for a failed
//! worker, a factory kind, or a description for anything else.

use std::time::Duration;

use myriad_engine::{validate_name, Error, Message};

use crate::envelope::ErrorCode;

/// The code and text that describe `error` to a peer.
pub fn encode(error: &Error) -> (ErrorCode, Message) {
    let (code, text) = match error {
        Error::Timeout { after, .. } => (ErrorCode::Timeout, after.as_millis().to_string()),
        Error::NoSuchWorker(name) => (ErrorCode::NoSuchWorker, name.clone()),
        Error::InvalidName { reason, .. } => (ErrorCode::InvalidName, (*reason).to_owned()),
        Error::NameTaken(name) => (ErrorCode::NameTaken, name.clone()),
        Error::MailboxFull(name) => (ErrorCode::MailboxFull, name.clone()),
        Error::WorkerFailed { reason, .. } => (ErrorCode::WorkerFailed, reason.clone()),
        Error::NoReply(name) => (ErrorCode::NoReply, name.clone()),
        Error::InvalidMessage(text) => (ErrorCode::InvalidMessage, text.clone()),
        Error::MessageTooLarge { size, max } => {
            (ErrorCode::MessageTooLarge, format!("{size} {max}"))
        }
        Error::NoRoute(node) => (ErrorCode::NoRoute, node.clone()),
        Error::NodeStopped => (ErrorCode::NodeStopped, String::new()),
        other => (ErrorCode::Other, other.to_string()),
    };
    (code, Message::from(text))
}

/// The engine error for a `reply err` from node `peer` about `target` (the
/// address the asker used, e.g. `node/worker`; `worker` is its worker part).
pub fn decode(code: ErrorCode, text: &str, peer: &str, target: &str, worker: &str) -> Error {
    match code {
        ErrorCode::Timeout => Error::Timeout {
            worker: target.to_owned(),
            after: Duration::from_millis(text.parse().unwrap_or(0)),
        },
        ErrorCode::NoSuchWorker => Error::NoSuchWorker(target.to_owned()),
        ErrorCode::InvalidName => match validate_name(worker) {
            Err(local) => local,
            Ok(()) => Error::InvalidName {
                name: worker.to_owned(),
                reason: "refused by the remote node",
            },
        },
        ErrorCode::NameTaken => Error::NameTaken(target.to_owned()),
        ErrorCode::MailboxFull => Error::MailboxFull(target.to_owned()),
        ErrorCode::WorkerFailed => Error::WorkerFailed {
            worker: target.to_owned(),
            reason: text.to_owned(),
        },
        ErrorCode::NoReply => Error::NoReply(target.to_owned()),
        ErrorCode::InvalidMessage => Error::InvalidMessage(text.to_owned()),
        ErrorCode::MessageTooLarge => {
            let mut fields = text.split(' ').map(|f| f.parse().unwrap_or(0));
            Error::MessageTooLarge {
                size: fields.next().unwrap_or(0),
                max: fields.next().unwrap_or(0),
            }
        }
        ErrorCode::NoRoute => Error::NoRoute(text.to_owned()),
        ErrorCode::NodeStopped => Error::ConnectionLost(peer.to_owned()),
        ErrorCode::UnknownFactory => Error::InvalidMessage(format!(
            "node {peer} has no worker kind {text:?} (see TransportConfig::worker_kind)"
        )),
        ErrorCode::Other => Error::WorkerFailed {
            worker: target.to_owned(),
            reason: text.to_owned(),
        },
    }
}

/// The wire form of an answer: its body, or the code and text of its error.
pub fn to_wire(result: Result<Message, Error>) -> Result<Message, (ErrorCode, Message)> {
    result.map_err(|error| encode(&error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_survive_the_trip() {
        let cases = [
            Error::Timeout {
                worker: "b/w".into(),
                after: Duration::from_millis(250),
            },
            Error::NoSuchWorker("b/w".into()),
            Error::NameTaken("b/w".into()),
            Error::MailboxFull("b/w".into()),
            Error::WorkerFailed {
                worker: "b/w".into(),
                reason: "boom".into(),
            },
            Error::NoReply("b/w".into()),
            Error::InvalidMessage("bad".into()),
            Error::MessageTooLarge { size: 10, max: 5 },
            Error::NoRoute("c".into()),
        ];
        for error in cases {
            let (code, text) = encode(&error);
            assert_eq!(decode(code, &text, "b", "b/w", "w"), error);
        }
    }

    #[test]
    fn an_invalid_name_gets_its_local_reason() {
        let local = validate_name("has space").unwrap_err();
        let (code, text) = encode(&local);
        assert_eq!(decode(code, &text, "b", "b/has space", "has space"), local);
    }

    #[test]
    fn a_stopping_peer_is_a_lost_connection() {
        let (code, text) = encode(&Error::NodeStopped);
        assert_eq!(
            decode(code, &text, "b", "b/w", "w"),
            Error::ConnectionLost("b".into())
        );
    }
}
