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

// ----- delivery flow control ---------------------------------------------------

/// A body whose send costs a quarter of a worker's window.
fn quarter() -> Message {
    let len = flow::WORKER_WINDOW / 4 - flow::SEND_OVERHEAD;
    Message::from("x".repeat(len as usize))
}

/// The plain sends in `incoming`, with their targets' names and receipts.
fn receipts(incoming: Vec<Incoming<TestAsker>>) -> Vec<(Option<WorkerAddr>, Receipt)> {
    incoming
        .into_iter()
        .map(|i| match i {
            Incoming::Send {
                target,
                receipt: Some(receipt),
                ..
            } => (target, receipt),
            other => panic!("expected a send with a receipt, got {other:?}"),
        })
        .collect()
}

fn worker(name: &str) -> Option<WorkerAddr> {
    Some(WorkerAddr::from(name))
}

fn window_full(worker: &str) -> Error {
    Error::MailboxFull(format!(
        "beta/{worker} (its delivery window on the link is full)"
    ))
}

/// Sends to `worker` until its window is full: four sends of a quarter.
fn fill(link: &mut Link, worker: &str) {
    for _ in 0..4 {
        link.send(&to(worker), quarter(), &mut None).unwrap();
    }
    assert_eq!(
        link.send(&to(worker), quarter(), &mut None),
        Err(window_full(worker))
    );
}

#[test]
fn a_workers_window_holds_its_sends_until_they_are_settled_and_no_others() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    fill(&mut alpha, "slow");
    alpha.send(&to("fast"), quarter(), &mut None).unwrap();
    carry(&mut alpha, &mut beta, now);
    let got = receipts(incoming(&mut beta));
    assert_eq!(got.len(), 5);

    // `fast` and the first send to `slow` are settled; nothing else.
    for (target, receipt) in [&got[0], &got[4]] {
        beta.settle(*receipt, target, Ok(()));
    }
    assert!(beta.take_wake().transmit, "credits are to be written");
    carry(&mut beta, &mut alpha, now);
    assert!(incoming(&mut alpha).is_empty(), "credits stay inside");
    alpha.send(&to("slow"), quarter(), &mut None).unwrap();
    assert_eq!(
        alpha.send(&to("slow"), quarter(), &mut None),
        Err(window_full("slow"))
    );
    for _ in 0..3 {
        alpha.send(&to("fast"), quarter(), &mut None).unwrap();
    }
    assert!(!alpha.is_closed() && !beta.is_closed());
}

#[test]
fn sends_before_the_handshake_hold_their_window_too() {
    let mut alpha = Link::new(Some(name("beta")), settings());
    fill(&mut alpha, "w");
    // A failed attempt forgets the window with the sends it drops.
    assert_eq!(alpha.disconnected(Phase::Connecting), 4);
    alpha.send(&to("w"), quarter(), &mut None).unwrap();
}

#[test]
fn heartbeats_keep_the_link_alive_while_a_worker_holds_its_window() {
    let t0 = Instant::now();
    let (mut alpha, mut beta) = pair(t0);
    fill(&mut alpha, "held");
    carry(&mut alpha, &mut beta, t0);
    let held = receipts(incoming(&mut beta));
    // Three heartbeat timeouts with nothing settled and nothing sent.
    let mut now = t0;
    while now.duration_since(t0) < 15 * SECOND {
        now = alpha
            .poll_timeout()
            .unwrap()
            .min(beta.poll_timeout().unwrap());
        alpha.handle_timeout(now);
        beta.handle_timeout(now);
        carry(&mut beta, &mut alpha, now);
        carry(&mut alpha, &mut beta, now);
        assert!(incoming(&mut alpha).is_empty());
        assert!(incoming(&mut beta).is_empty());
    }
    assert!(!alpha.is_closed() && !beta.is_closed(), "the link stays up");
    assert_eq!(
        alpha.send(&to("held"), quarter(), &mut None),
        Err(window_full("held"))
    );
    for (target, receipt) in &held {
        beta.settle(*receipt, target, Ok(()));
    }
    carry(&mut beta, &mut alpha, now);
    assert!(incoming(&mut alpha).is_empty());
    fill(&mut alpha, "held");
}

#[test]
fn undeliverable_sends_are_reported_to_the_sender_by_reason() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    for _ in 0..3 {
        alpha
            .send(&to("ghost"), Message::from("x"), &mut None)
            .unwrap();
    }
    alpha
        .send(&to("full"), Message::from("y"), &mut None)
        .unwrap();
    carry(&mut alpha, &mut beta, now);
    let gone = (ErrorCode::NoSuchWorker, Message::from("ghost"));
    for (target, receipt) in receipts(incoming(&mut beta)) {
        let outcome = match &target {
            Some(WorkerAddr::Name(n)) if n == "ghost" => Err(gone.clone()),
            _ => Err((ErrorCode::MailboxFull, Message::from("full"))),
        };
        beta.settle(receipt, &target, outcome);
    }
    carry(&mut beta, &mut alpha, now);
    let mut reports: Vec<_> = incoming(&mut alpha)
        .into_iter()
        .map(|i| match i {
            Incoming::Undeliverable {
                target,
                count,
                error,
            } => (target, count, error),
            other => panic!("expected a report, got {other:?}"),
        })
        .collect();
    reports.sort_by_key(|(_, count, _)| *count);
    assert_eq!(
        reports,
        [
            (
                worker("full"),
                1,
                Error::MailboxFull("beta/full".to_owned())
            ),
            (
                worker("ghost"),
                3,
                Error::NoSuchWorker("beta/ghost".to_owned())
            ),
        ]
    );
    // The credits came with the reports: both windows are whole again.
    assert_eq!(alpha.sent.total(), 0);
    assert_eq!(beta.unsettled, 0);
}

#[test]
fn a_report_goes_out_before_the_reply_to_a_later_ask() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    let asker = TestAsker::default();
    alpha
        .send(&to("ghost"), Message::from("x"), &mut None)
        .unwrap();
    alpha
        .send(&to("w"), Message::from("ask"), &mut Some(asker.clone()))
        .unwrap();
    carry(&mut alpha, &mut beta, now);
    let mut got = incoming(&mut beta).into_iter();
    let Some(Incoming::Send {
        target,
        receipt: Some(receipt),
        ..
    }) = got.next()
    else {
        panic!("expected the send first")
    };
    let Some(Incoming::Ask { id, .. }) = got.next() else {
        panic!("expected the ask")
    };
    let gone = (ErrorCode::NoSuchWorker, Message::from("ghost"));
    beta.settle(receipt, &target, Err(gone));
    beta.reply(2, id, Ok(Message::from("pong")));
    carry(&mut beta, &mut alpha, now);
    let got = incoming(&mut alpha);
    assert!(
        matches!(
            &got[..],
            [
                Incoming::Undeliverable { count: 1, .. },
                Incoming::Answer(_)
            ]
        ),
        "{got:?}"
    );
}

#[test]
fn a_peer_that_sends_beyond_the_window_is_cut_off() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    // Alpha's encoder, used past its link's window check: a quarter of a
    // worker's window to each of 17 workers, one more than the link's.
    let encoder = alpha.out.encoder.as_mut().unwrap();
    let sends = flow::LINK_WINDOW / (flow::WORKER_WINDOW / 4) + 1;
    for i in 0..sends {
        let send = Envelope::new(Kind::Send, worker(&i.to_string()), quarter());
        encoder.push(&send).unwrap();
    }
    alpha.wake.transmit = true;
    carry(&mut alpha, &mut beta, now);
    assert_eq!(receipts(incoming(&mut beta)).len() as u64, sends - 1);
    assert!(beta.is_closed());
    assert!(matches!(
        beta.take_close_reason(),
        LinkError::Protocol(ProtocolError::Malformed(m)) if m.contains("delivery window")
    ));
}

#[test]
fn malformed_credits_and_reports_close_the_link() {
    let cases = [
        (Kind::Credit { bytes: 1 }, "a credit for more"),
        (
            Kind::Undeliverable {
                count: 0,
                code: ErrorCode::NoSuchWorker,
            },
            "for no sends",
        ),
    ];
    for (kind, what) in cases {
        let now = Instant::now();
        let (mut alpha, mut beta) = pair(now);
        let encoder = beta.out.encoder.as_mut().unwrap();
        encoder.push(&Envelope::new(kind, worker("w"), "")).unwrap();
        carry(&mut beta, &mut alpha, now);
        assert!(incoming(&mut alpha).is_empty());
        assert!(alpha.is_closed(), "{kind:?}");
        assert!(matches!(
            alpha.take_close_reason(),
            LinkError::Protocol(ProtocolError::Malformed(m)) if m.contains(what)
        ));
    }
}

#[test]
fn a_receipt_of_an_earlier_connection_is_ignored() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    alpha.send(&to("w"), Message::from("x"), &mut None).unwrap();
    carry(&mut alpha, &mut beta, now);
    let old = receipts(incoming(&mut beta));
    beta.disconnected(Phase::Closed);
    alpha.disconnected(Phase::Connecting);
    answers(&mut alpha);
    connect(&mut alpha, &mut beta, 3, now);
    carry(&mut beta, &mut alpha, now);
    beta.take_wake();
    for (target, receipt) in old {
        beta.settle(receipt, &target, Ok(()));
    }
    assert_eq!(beta.take_wake(), Wake::default());
    assert!(
        beta.poll_transmit().is_none(),
        "no credit for a forgotten send"
    );
}

#[test]
fn a_version_1_peer_gets_neither_windows_nor_receipts() {
    let now = Instant::now();
    let mut alpha = Link::new(Some(name("beta")), settings());
    let mut beta = Link::new(None, settings());
    let (mut initiator, first) = Handshake::initiator(&config("alpha")).unwrap();
    let mut responder = Handshake::responder(&config("beta")).unwrap();
    let second = sent(responder.feed(&first).unwrap());
    let third = sent(initiator.feed(&second).unwrap());
    let mut b = done(responder.feed(&third).unwrap());
    b.peer.version = 1;
    beta.connected(now, 2, &b.peer, b.encoder, b.decoder);
    let confirmation = beta.poll_transmit().unwrap();
    let mut a = done(initiator.feed(&confirmation).unwrap());
    a.peer.version = 1;
    alpha.connected(now, 1, &a.peer, a.encoder, a.decoder);
    for _ in 0..8 {
        alpha.send(&to("w"), quarter(), &mut None).unwrap();
    }
    carry(&mut alpha, &mut beta, now);
    let got = incoming(&mut beta);
    assert_eq!(got.len(), 8);
    assert!(got
        .iter()
        .all(|i| matches!(i, Incoming::Send { receipt: None, .. })));
}
