//! The link state machine driven by hand: two links joined by a real
//! handshake, bytes moved between them by the test, and a fake clock (plain
//! `Instant`s the test advances).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::*;
use crate::handshake::{Handshake, LinkConfig, Step};
use crate::keys::StaticKeypair;
use crate::zone::ZoneConfig;

const SECOND: Duration = Duration::from_secs(1);

/// An asker that records its answer and can be told to leave.
#[derive(Debug, Default, Clone)]
struct TestAsker {
    answer: Rc<RefCell<Option<Result<Message>>>>,
    gone: Rc<Cell<bool>>,
}

impl Asker for TestAsker {
    fn is_abandoned(&self) -> bool {
        self.gone.get()
    }

    fn complete(self, result: Result<Message>) {
        *self.answer.borrow_mut() = Some(result);
    }
}

impl TestAsker {
    fn answer(&self) -> Option<Result<Message>> {
        self.answer.borrow_mut().take()
    }
}

type Link = LinkState<TestAsker>;

fn settings() -> LinkSettings {
    LinkSettings {
        buffer_limit: 16 << 20,
        max_message_size: 1 << 20,
        heartbeat_interval: SECOND,
        heartbeat_timeout: 5 * SECOND,
        request_timeout: 10 * SECOND,
    }
}

fn name(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

fn config(node: &str) -> LinkConfig {
    let zone = ZoneConfig::new("z").unwrap();
    LinkConfig::new(name(node), StaticKeypair::generate().unwrap(), zone)
}

fn sent(step: Step) -> Bytes {
    match step {
        Step::Send(bytes) => bytes,
        other => panic!("expected bytes to send, got {other:?}"),
    }
}

fn done(step: Step) -> Box<crate::handshake::Established> {
    match step {
        Step::Done(established) => established,
        other => panic!("expected the handshake to finish, got {other:?}"),
    }
}

fn to(worker: &str) -> RemoteAddress {
    RemoteAddress {
        node: Arc::from("beta"),
        worker: Arc::from(worker),
    }
}

/// Two links, `alpha` (which dialled, connection 1) and `beta` (which
/// accepted, connection 2), with the given settings for alpha. The
/// handshake runs for real; beta's first output (the confirmation) goes
/// through beta's link.
fn pair_with(alpha_settings: LinkSettings, now: Instant) -> (Link, Link) {
    let mut alpha = Link::new(Some(name("beta")), alpha_settings);
    let mut beta = Link::new(None, settings());
    connect(&mut alpha, &mut beta, 1, now);
    (alpha, beta)
}

fn pair(now: Instant) -> (Link, Link) {
    pair_with(settings(), now)
}

/// Runs a handshake between `alpha` (initiator) and `beta` at `now`.
fn connect(alpha: &mut Link, beta: &mut Link, seq: u64, now: Instant) {
    let (mut initiator, first) = Handshake::initiator(&config("alpha")).unwrap();
    let mut responder = Handshake::responder(&config("beta")).unwrap();
    let second = sent(responder.feed(&first).unwrap());
    let third = sent(initiator.feed(&second).unwrap());
    let b = done(responder.feed(&third).unwrap());
    beta.connected(now, seq + 1, &b.peer, b.encoder, b.decoder);
    let confirmation = beta.poll_transmit().expect("the confirmation");
    beta.transmitted(now);
    let a = done(initiator.feed(&confirmation).unwrap());
    alpha.connected(now, seq, &a.peer, a.encoder, a.decoder);
}

/// Moves everything `from` has to write to `to`, at `now`.
fn carry(from: &mut Link, to: &mut Link, now: Instant) -> usize {
    let mut bytes = 0;
    while let Some(chunk) = from.poll_transmit() {
        from.transmitted(now);
        bytes += chunk.len();
        to.handle_input(now, &chunk);
    }
    bytes
}

/// Everything `link` decoded.
fn incoming(link: &mut Link) -> Vec<Incoming<TestAsker>> {
    std::iter::from_fn(|| link.poll_input()).collect()
}

fn bodies(incoming: &[Incoming<TestAsker>]) -> Vec<&str> {
    incoming
        .iter()
        .map(|i| match i {
            Incoming::Send { body, .. } | Incoming::Ask { body, .. } => body.as_str(),
            other => panic!("expected a send or an ask, got {other:?}"),
        })
        .collect()
}

fn answers(link: &mut Link) -> Vec<Answer<TestAsker>> {
    std::iter::from_fn(|| link.poll_answer()).collect()
}

#[test]
fn sends_before_the_handshake_wait_and_go_out_in_order_after_it() {
    let now = Instant::now();
    let mut alpha = Link::new(Some(name("beta")), settings());
    let mut beta = Link::new(None, settings());
    for body in ["one", "two", "three"] {
        alpha
            .send(&to("w"), Message::from(body), &mut None)
            .unwrap();
    }
    assert!(
        alpha.take_wake().transmit,
        "the first send wakes the writer"
    );
    assert!(
        alpha.poll_transmit().is_none(),
        "nothing is written before the handshake"
    );

    connect(&mut alpha, &mut beta, 1, now);
    assert!(alpha.take_wake().transmit);
    carry(&mut alpha, &mut beta, now);
    let got = incoming(&mut beta);
    assert_eq!(bodies(&got), ["one", "two", "three"]);
    let Incoming::Send {
        target: Some(WorkerAddr::Name(worker)),
        ..
    } = &got[0]
    else {
        panic!("a send without its target")
    };
    assert_eq!(worker.as_str(), "w");
}

#[test]
fn the_buffer_before_the_handshake_is_bounded() {
    let limit = 4 * (100 + ENVELOPE_COST);
    let mut alpha = Link::new(
        Some(name("beta")),
        LinkSettings {
            buffer_limit: limit,
            ..settings()
        },
    );
    let body = Message::from("x".repeat(100));
    for _ in 0..4 {
        alpha.send(&to("w"), body.clone(), &mut None).unwrap();
    }
    let refused = alpha.send(&to("w"), body, &mut None);
    assert_eq!(
        refused,
        Err(Error::MailboxFull("link to node beta".to_owned()))
    );
}

#[test]
fn the_buffer_is_bounded_until_the_writer_has_written() {
    let now = Instant::now();
    let small = LinkSettings {
        buffer_limit: 4096,
        ..settings()
    };
    let (mut alpha, mut beta) = pair_with(small, now);
    let body = Message::from("y".repeat(1000));
    let mut accepted = 0;
    while alpha.send(&to("w"), body.clone(), &mut None).is_ok() {
        accepted += 1;
        assert!(accepted < 100, "the buffer never filled");
    }
    // Handed to the writer, the bytes still count until they are written.
    let chunk = alpha.poll_transmit().unwrap();
    assert!(alpha.send(&to("w"), body.clone(), &mut None).is_err());
    alpha.transmitted(now);
    alpha.send(&to("w"), body, &mut None).unwrap();
    beta.handle_input(now, &chunk);
    carry(&mut alpha, &mut beta, now);
    assert_eq!(incoming(&mut beta).len(), accepted + 1);
}

#[test]
fn an_ask_is_answered_by_its_reply() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    let asker = TestAsker::default();
    let mut reply = Some(asker.clone());
    alpha
        .send(&to("w"), Message::from("ping"), &mut reply)
        .unwrap();
    assert!(reply.is_none(), "the link took the asker");
    carry(&mut alpha, &mut beta, now);
    let Some(Incoming::Ask { id, body, .. }) = beta.poll_input() else {
        panic!("no ask")
    };
    assert_eq!(body.as_str(), "ping");
    beta.reply(2, id, Ok(Message::from("pong")));
    carry(&mut beta, &mut alpha, now);
    let Some(Incoming::Answer(answer)) = alpha.poll_input() else {
        panic!("no answer")
    };
    assert_eq!(asker.answer(), None, "nothing is delivered inside the link");
    answer.deliver();
    assert_eq!(asker.answer(), Some(Ok(Message::from("pong"))));
    assert!(alpha.poll_input().is_none());
}

#[test]
fn a_reply_over_the_limit_is_sent_as_an_error_reply() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    let asker = TestAsker::default();
    alpha
        .send(&to("w"), Message::from("big?"), &mut Some(asker.clone()))
        .unwrap();
    carry(&mut alpha, &mut beta, now);
    let Some(Incoming::Ask { id, .. }) = beta.poll_input() else {
        panic!("no ask")
    };
    // The encoder's limit: the smaller of both ends' handshake maxima.
    let limit = crate::codec::DEFAULT_MAX_MESSAGE_SIZE as usize;
    beta.reply(2, id, Ok(Message::from("x".repeat(limit + 1))));
    carry(&mut beta, &mut alpha, now);
    let Some(Incoming::Answer(answer)) = alpha.poll_input() else {
        panic!("no answer")
    };
    answer.deliver();
    let expected = Error::MessageTooLarge {
        size: limit + 1,
        max: limit,
    };
    match asker.answer() {
        Some(Err(error)) => assert_eq!(error, expected),
        Some(Ok(body)) => panic!("a reply of {} bytes went through", body.len()),
        None => panic!("no answer"),
    }
    assert!(!alpha.is_closed() && !beta.is_closed(), "the link stays up");
}

#[test]
fn an_error_reply_becomes_the_engine_error() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    let asker = TestAsker::default();
    alpha
        .send(&to("w"), Message::from("ping"), &mut Some(asker.clone()))
        .unwrap();
    carry(&mut alpha, &mut beta, now);
    let Some(Incoming::Ask { id, .. }) = beta.poll_input() else {
        panic!("no ask")
    };
    let error = Error::NoSuchWorker("w".to_owned());
    beta.reply(2, id, Err(remote_error::encode(&error)));
    carry(&mut beta, &mut alpha, now);
    let Some(Incoming::Answer(answer)) = alpha.poll_input() else {
        panic!("no answer")
    };
    answer.deliver();
    assert_eq!(
        asker.answer(),
        Some(Err(Error::NoSuchWorker("beta/w".to_owned())))
    );
}

#[test]
fn a_reply_meant_for_an_earlier_connection_is_dropped() {
    let now = Instant::now();
    let (_, mut beta) = pair(now);
    beta.take_wake();
    beta.reply(7, 1, Ok(Message::from("late")));
    assert_eq!(beta.take_wake(), Wake::default());
    assert!(beta.poll_transmit().is_none());
}

#[test]
fn an_idle_link_sends_heartbeats_and_a_busy_one_does_not() {
    let t0 = Instant::now();
    let (mut alpha, mut beta) = pair(t0);
    let tick = settings().tick();
    assert_eq!(alpha.poll_timeout(), Some(t0 + tick));
    alpha.take_wake();

    // Written to just before the tick: no heartbeat yet.
    alpha
        .send(&to("w"), Message::from("busy"), &mut None)
        .unwrap();
    carry(&mut alpha, &mut beta, t0 + tick / 2);
    alpha.handle_timeout(t0 + tick);
    assert!(alpha.poll_transmit().is_none());
    assert_eq!(alpha.poll_timeout(), Some(t0 + 2 * tick));

    // Idle for the interval: a heartbeat, which the peer swallows but
    // which counts as traffic received.
    let later = t0 + 2 * tick;
    alpha.handle_timeout(later);
    assert!(alpha.take_wake().transmit);
    assert!(carry(&mut alpha, &mut beta, later) > 0);
    assert_eq!(bodies(&incoming(&mut beta)), ["busy"]);
    assert_eq!(beta.received().envelopes, 2);
}

#[test]
fn a_silent_peer_closes_the_link_and_its_asks_fail_with_connection_lost() {
    let t0 = Instant::now();
    let (mut alpha, _beta) = pair(t0);
    let (asker, (reply, requested)) = (TestAsker::default(), flume::unbounded());
    alpha
        .send(&to("w"), Message::from("ping"), &mut Some(asker.clone()))
        .unwrap();
    alpha
        .request(t0, ControlOp::ListWorkers, None, Message::default(), reply)
        .unwrap();
    alpha.take_wake();

    // Ticks come and go while the timeout has not passed.
    let mut now = t0;
    while now.duration_since(t0) <= 5 * SECOND {
        now = alpha.poll_timeout().unwrap();
        alpha.handle_timeout(now);
        carry(&mut alpha, &mut Link::new(None, settings()), now);
    }
    assert!(alpha.take_wake().closed, "the link closed");
    assert!(alpha.is_closed());
    assert!(matches!(alpha.take_close_reason(), LinkError::Silent(t) if t == 5 * SECOND));
    assert!(
        asker.answer().is_none(),
        "the asks wait until the link is down"
    );

    assert_eq!(alpha.disconnected(Phase::Backoff), 0);
    assert!(alpha.take_wake().answers);
    answers(&mut alpha).into_iter().for_each(Answer::deliver);
    let lost = Error::ConnectionLost("beta".to_owned());
    assert_eq!(asker.answer(), Some(Err(lost.clone())));
    assert_eq!(requested.try_recv(), Ok(Err(lost.clone())));
    assert_eq!(alpha.poll_timeout(), None, "nothing left to wake for");
    let refused = alpha.send(&to("w"), Message::from("more"), &mut None);
    assert_eq!(refused, Err(lost));
}

#[test]
fn a_frame_trickled_byte_by_byte_does_not_keep_the_link_alive() {
    let t0 = Instant::now();
    let (mut alpha, mut beta) = pair(t0);
    beta.send(&to("w"), Message::from("x".repeat(100)), &mut None)
        .unwrap();
    let frame = beta.poll_transmit().unwrap();
    // One byte every 100 ms: the frame would take over 10 s, the timeout is 5 s.
    let mut now = t0;
    for byte in frame.iter().take(frame.len() - 1) {
        now += SECOND / 10;
        alpha.handle_input(now, std::slice::from_ref(byte));
        assert!(incoming(&mut alpha).is_empty());
        if alpha.poll_timeout().is_some_and(|due| due <= now) {
            alpha.handle_timeout(now);
        }
    }
    assert!(alpha.is_closed(), "a trickle kept the link open");
    assert!(matches!(alpha.take_close_reason(), LinkError::Silent(t) if t == 5 * SECOND));
}

#[test]
fn a_message_of_many_frames_arriving_slowly_keeps_the_link_alive() {
    let t0 = Instant::now();
    let (mut alpha, mut beta) = pair(t0);
    let body = "y".repeat(1 << 20);
    beta.send(&to("w"), Message::from(body.clone()), &mut None)
        .unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = beta.poll_transmit() {
        bytes.extend_from_slice(&chunk);
    }
    // One frame (a u16 length and its body) a second: 16 s in all, longer
    // than the 5 s timeout, but never 5 s without a complete frame.
    let mut now = t0;
    let mut rest = &bytes[..];
    let mut delivered = Vec::new();
    while !rest.is_empty() {
        let len = 2 + usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        now += SECOND;
        while alpha.poll_timeout().is_some_and(|due| due <= now) {
            alpha.handle_timeout(now);
        }
        assert!(!alpha.is_closed(), "closed while frames kept arriving");
        alpha.handle_input(now, &rest[..len]);
        delivered.extend(incoming(&mut alpha));
        rest = &rest[len..];
    }
    assert!(now.duration_since(t0) > 10 * SECOND);
    assert_eq!(bodies(&delivered), [body.as_str()]);
}

#[test]
fn traffic_from_the_peer_keeps_the_link_alive() {
    let t0 = Instant::now();
    let (mut alpha, mut beta) = pair(t0);
    let mut now = t0;
    while now.duration_since(t0) < 30 * SECOND {
        now = alpha.poll_timeout().unwrap();
        alpha.handle_timeout(now);
        beta.handle_timeout(now);
        carry(&mut beta, &mut alpha, now);
        carry(&mut alpha, &mut beta, now);
        incoming(&mut alpha);
        incoming(&mut beta);
    }
    assert!(!alpha.is_closed() && !beta.is_closed());
}

#[test]
fn a_request_without_an_answer_times_out() {
    let t0 = Instant::now();
    let (mut alpha, mut beta) = pair(t0);
    alpha.take_wake();
    let (reply, answer) = flume::unbounded();
    let op = ControlOp::StopWorker;
    alpha
        .request(t0, op, Some("w"), Message::default(), reply)
        .unwrap();
    assert!(
        alpha.take_wake().timer,
        "the first deadline rearms the timer"
    );
    carry(&mut alpha, &mut beta, t0);
    assert!(matches!(
        beta.poll_input(),
        Some(Incoming::Control { op: ControlOp::StopWorker, target: Some(WorkerAddr::Name(w)), .. })
            if w.as_str() == "w"
    ));

    let deadline = t0 + 10 * SECOND;
    alpha.handle_timeout(deadline - Duration::from_millis(1));
    assert!(alpha.poll_answer().is_none());
    alpha.handle_timeout(deadline);
    alpha.poll_answer().unwrap().deliver();
    let timeout = Error::Timeout {
        worker: "beta/w".to_owned(),
        after: 10 * SECOND,
    };
    assert_eq!(answer.try_recv(), Ok(Err(timeout)));
}

#[test]
fn asks_whose_askers_left_are_forgotten_on_the_tick() {
    let t0 = Instant::now();
    let (mut alpha, _beta) = pair(t0);
    let (stays, leaves) = (TestAsker::default(), TestAsker::default());
    for asker in [&stays, &leaves] {
        let mut reply = Some(asker.clone());
        alpha
            .send(&to("w"), Message::from("?"), &mut reply)
            .unwrap();
    }
    leaves.gone.set(true);
    assert_eq!(alpha.handle_timeout(t0 + settings().tick()), 1);
    answers(&mut alpha).into_iter().for_each(Answer::deliver);
    assert_eq!(
        leaves.answer(),
        Some(Err(Error::NoReply("beta/w".to_owned())))
    );
    assert_eq!(stays.answer(), None, "the other ask still waits");
    assert_eq!(alpha.waiting.len(), 1);
}

#[test]
fn a_corrupt_frame_closes_the_link_with_a_protocol_error() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    alpha.send(&to("w"), Message::from("x"), &mut None).unwrap();
    let chunk = alpha.poll_transmit().unwrap();
    let mut corrupt = chunk.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    beta.take_wake();
    beta.handle_input(now, &corrupt);
    assert!(beta.poll_input().is_none());
    assert!(beta.take_wake().closed);
    assert!(matches!(
        beta.take_close_reason(),
        LinkError::Protocol(ProtocolError::Decrypt)
    ));
}

#[test]
fn the_link_limit_is_the_smaller_of_both_maximum_sizes() {
    let now = Instant::now();
    let mut alpha = Link::new(Some(name("beta")), settings());
    let big = Message::from("z".repeat(2 << 20));
    let too_large = Error::MessageTooLarge {
        size: 2 << 20,
        max: 1 << 20,
    };
    assert_eq!(alpha.send(&to("w"), big, &mut None), Err(too_large));
    // The peer accepts the default 16 MiB; this node's 1 MiB still rules.
    let mut beta = Link::new(None, settings());
    connect(&mut alpha, &mut beta, 1, now);
    assert_eq!(alpha.send_limit, 1 << 20);
}

#[test]
fn a_failed_attempt_drops_the_waiting_sends_and_fails_the_asks() {
    let mut alpha = Link::new(Some(name("beta")), settings());
    let asker = TestAsker::default();
    alpha.send(&to("w"), Message::from("a"), &mut None).unwrap();
    alpha
        .send(&to("w"), Message::from("b"), &mut Some(asker.clone()))
        .unwrap();
    alpha.send(&to("w"), Message::from("c"), &mut None).unwrap();
    assert_eq!(
        alpha.disconnected(Phase::Backoff),
        2,
        "two plain sends dropped"
    );
    answers(&mut alpha).into_iter().for_each(Answer::deliver);
    assert_eq!(
        asker.answer(),
        Some(Err(Error::ConnectionLost("beta".to_owned())))
    );
    alpha.set_phase(Phase::Connecting);
    alpha.send(&to("w"), Message::from("d"), &mut None).unwrap();
}

#[test]
fn a_refused_ask_keeps_its_asker() {
    let mut alpha = Link::new(Some(name("beta")), settings());
    alpha.disconnected(Phase::Backoff);
    let mut reply = Some(TestAsker::default());
    assert!(alpha
        .send(&to("w"), Message::from("?"), &mut reply)
        .is_err());
    assert!(reply.is_some());
    let empty = RemoteAddress {
        node: Arc::from("beta"),
        worker: Arc::from(""),
    };
    alpha.set_phase(Phase::Connecting);
    assert!(matches!(
        alpha.send(&empty, Message::from("?"), &mut reply),
        Err(Error::InvalidName { .. })
    ));
    assert!(reply.is_some());
}
