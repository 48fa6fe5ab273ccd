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
    connect_as(alpha, beta, seq, now, &config("beta"));
}

/// [`connect`], with `beta`'s configuration.
fn connect_as(
    alpha: &mut Link,
    beta: &mut Link,
    seq: u64,
    now: Instant,
    beta_config: &LinkConfig,
) -> Vec<Error> {
    let (mut initiator, first) = Handshake::initiator(&config("alpha")).unwrap();
    let mut responder = Handshake::responder(beta_config).unwrap();
    let second = sent(responder.feed(&first).unwrap());
    let third = sent(initiator.feed(&second).unwrap());
    let b = done(responder.feed(&third).unwrap());
    beta.connected(now, seq + 1, &b.peer, b.encoder, b.decoder);
    let confirmation = beta.poll_transmit().expect("the confirmation");
    beta.transmitted(now);
    let a = done(initiator.feed(&confirmation).unwrap());
    alpha.connected(now, seq, &a.peer, a.encoder, a.decoder)
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
            .send(&to("w"), Message::from(body), None, &mut None)
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
        alpha.send(&to("w"), body.clone(), None, &mut None).unwrap();
    }
    let refused = alpha.send(&to("w"), body, None, &mut None);
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
    while alpha.send(&to("w"), body.clone(), None, &mut None).is_ok() {
        accepted += 1;
        assert!(accepted < 100, "the buffer never filled");
    }
    // Handed to the writer, the bytes still count until they are written.
    let chunk = alpha.poll_transmit().unwrap();
    assert!(alpha.send(&to("w"), body.clone(), None, &mut None).is_err());
    alpha.transmitted(now);
    alpha.send(&to("w"), body, None, &mut None).unwrap();
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
        .send(&to("w"), Message::from("ping"), None, &mut reply)
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
        .send(
            &to("w"),
            Message::from("big?"),
            None,
            &mut Some(asker.clone()),
        )
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
        .send(
            &to("w"),
            Message::from("ping"),
            None,
            &mut Some(asker.clone()),
        )
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
        .send(&to("w"), Message::from("busy"), None, &mut None)
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
        .send(
            &to("w"),
            Message::from("ping"),
            None,
            &mut Some(asker.clone()),
        )
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

    assert_eq!(alpha.disconnected(Phase::Backoff), Unsettled::default());
    assert!(alpha.take_wake().answers);
    answers(&mut alpha).into_iter().for_each(Answer::deliver);
    let lost = Error::ConnectionLost("beta".to_owned());
    assert_eq!(asker.answer(), Some(Err(lost.clone())));
    assert_eq!(requested.try_recv(), Ok(Err(lost.clone())));
    assert_eq!(alpha.poll_timeout(), None, "nothing left to wake for");
    let refused = alpha.send(&to("w"), Message::from("more"), None, &mut None);
    assert_eq!(refused, Err(lost));
}

#[test]
fn a_frame_trickled_byte_by_byte_does_not_keep_the_link_alive() {
    let t0 = Instant::now();
    let (mut alpha, mut beta) = pair(t0);
    beta.send(&to("w"), Message::from("x".repeat(100)), None, &mut None)
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
    beta.send(&to("w"), Message::from(body.clone()), None, &mut None)
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
            .send(&to("w"), Message::from("?"), None, &mut reply)
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
    alpha
        .send(&to("w"), Message::from("x"), None, &mut None)
        .unwrap();
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
    assert_eq!(alpha.send(&to("w"), big, None, &mut None), Err(too_large));
    // The peer accepts the default 16 MiB; this node's 1 MiB still rules.
    let mut beta = Link::new(None, settings());
    connect(&mut alpha, &mut beta, 1, now);
    assert_eq!(alpha.send_limit, 1 << 20);
}

#[test]
fn a_failed_attempt_drops_the_waiting_sends_and_fails_the_asks() {
    let mut alpha = Link::new(Some(name("beta")), settings());
    let asker = TestAsker::default();
    alpha
        .send(&to("w"), Message::from("a"), None, &mut None)
        .unwrap();
    alpha
        .send(&to("w"), Message::from("b"), None, &mut Some(asker.clone()))
        .unwrap();
    alpha
        .send(&to("w"), Message::from("c"), None, &mut None)
        .unwrap();
    assert_eq!(
        alpha.disconnected(Phase::Backoff),
        Unsettled {
            unsent: 2,
            in_doubt: 0
        },
        "two plain sends dropped"
    );
    answers(&mut alpha).into_iter().for_each(Answer::deliver);
    assert_eq!(
        asker.answer(),
        Some(Err(Error::ConnectionLost("beta".to_owned())))
    );
    alpha.set_phase(Phase::Connecting);
    alpha
        .send(&to("w"), Message::from("d"), None, &mut None)
        .unwrap();
}

#[test]
fn a_refused_ask_keeps_its_asker() {
    let mut alpha = Link::new(Some(name("beta")), settings());
    alpha.disconnected(Phase::Backoff);
    let mut reply = Some(TestAsker::default());
    assert!(alpha
        .send(&to("w"), Message::from("?"), None, &mut reply)
        .is_err());
    assert!(reply.is_some());
    let empty = RemoteAddress {
        node: Arc::from("beta"),
        worker: Arc::from(""),
    };
    alpha.set_phase(Phase::Connecting);
    assert!(matches!(
        alpha.send(&empty, Message::from("?"), None, &mut reply),
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

fn named(name: &str) -> Option<WorkerAddr> {
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
        link.send(&to(worker), quarter(), None, &mut None).unwrap();
    }
    assert_eq!(
        link.send(&to(worker), quarter(), None, &mut None),
        Err(window_full(worker))
    );
}

#[test]
fn a_workers_window_holds_its_sends_until_they_are_settled_and_no_others() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    fill(&mut alpha, "slow");
    alpha.send(&to("fast"), quarter(), None, &mut None).unwrap();
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
    alpha.send(&to("slow"), quarter(), None, &mut None).unwrap();
    assert_eq!(
        alpha.send(&to("slow"), quarter(), None, &mut None),
        Err(window_full("slow"))
    );
    for _ in 0..3 {
        alpha.send(&to("fast"), quarter(), None, &mut None).unwrap();
    }
    assert!(!alpha.is_closed() && !beta.is_closed());
}

#[test]
fn sends_before_the_handshake_hold_their_window_too() {
    let mut alpha = Link::new(Some(name("beta")), settings());
    fill(&mut alpha, "w");
    // A failed attempt forgets the window with the sends it drops.
    let unsent = Unsettled {
        unsent: 4,
        in_doubt: 0,
    };
    assert_eq!(alpha.disconnected(Phase::Connecting), unsent);
    alpha.send(&to("w"), quarter(), None, &mut None).unwrap();
}

/// Advances to the earlier of the two links' timeouts and handles it on both;
/// returns that time.
fn next_timeout(alpha: &mut Link, beta: &mut Link) -> Instant {
    let now = alpha
        .poll_timeout()
        .unwrap()
        .min(beta.poll_timeout().unwrap());
    alpha.handle_timeout(now);
    beta.handle_timeout(now);
    now
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
        now = next_timeout(&mut alpha, &mut beta);
        carry(&mut beta, &mut alpha, now);
        carry(&mut alpha, &mut beta, now);
        assert!(incoming(&mut alpha).is_empty());
        assert!(incoming(&mut beta).is_empty());
    }
    assert!(!alpha.is_closed() && !beta.is_closed(), "the link stays up");
    assert_eq!(
        alpha.send(&to("held"), quarter(), None, &mut None),
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
            .send(&to("ghost"), Message::from("x"), None, &mut None)
            .unwrap();
    }
    alpha
        .send(&to("full"), Message::from("y"), None, &mut None)
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
            (named("full"), 1, Error::MailboxFull("beta/full".to_owned())),
            (
                named("ghost"),
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
        .send(&to("ghost"), Message::from("x"), None, &mut None)
        .unwrap();
    alpha
        .send(
            &to("w"),
            Message::from("ask"),
            None,
            &mut Some(asker.clone()),
        )
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
        let send = Envelope::new(Kind::Send, named(&i.to_string()), quarter());
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
        encoder.push(&Envelope::new(kind, named("w"), "")).unwrap();
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
    alpha
        .send(&to("w"), Message::from("x"), None, &mut None)
        .unwrap();
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

// ----- waiting sends, forced sends, sends in doubt -------------------------------

/// What a waiting send's sender is told, once.
type Told = Rc<RefCell<Vec<Result<()>>>>;

fn ready(told: &Told) -> Ready {
    let told = told.clone();
    Box::new(move |result| told.borrow_mut().push(result))
}

/// Hands out `link`'s answers, waiting sends' verdicts included.
fn deliver_all(link: &mut Link) {
    answers(link).into_iter().for_each(Answer::deliver);
}

/// Settles every plain send `beta` received as delivered, and carries the
/// credits back to `alpha`; returns how many were forced.
fn settle_all(alpha: &mut Link, beta: &mut Link, now: Instant) -> usize {
    carry(alpha, beta, now);
    let mut forced = 0;
    for i in incoming(beta) {
        let Incoming::Send {
            target,
            receipt: Some(receipt),
            forced: f,
            ..
        } = i
        else {
            panic!("expected a send with a receipt, got {i:?}")
        };
        forced += usize::from(f);
        beta.settle(receipt, &target, Ok(()));
    }
    carry(beta, alpha, now);
    assert!(incoming(alpha).is_empty(), "credits stay inside");
    forced
}

#[test]
fn a_waiting_send_waits_for_its_workers_credit_while_others_go() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    let told = Told::default();
    fill(&mut alpha, "slow");
    let id = alpha.send_when_ready(&to("slow"), quarter(), None, false, ready(&told));
    assert!(id.is_some(), "it waits");
    // A later one to the same worker queues behind it; others go at once.
    assert!(alpha
        .send_when_ready(
            &to("slow"),
            Message::from("second"),
            None,
            false,
            ready(&told)
        )
        .is_some());
    assert_eq!(
        alpha.send_when_ready(&to("fast"), quarter(), None, false, ready(&told)),
        None
    );
    deliver_all(&mut alpha);
    assert_eq!(*told.borrow(), [Ok(())], "only the send to fast was taken");

    // Beta settles what it has: the credits let both waiting sends go, in order.
    assert_eq!(settle_all(&mut alpha, &mut beta, now), 0);
    deliver_all(&mut alpha);
    assert_eq!(*told.borrow(), [Ok(()), Ok(()), Ok(())]);
    carry(&mut alpha, &mut beta, now);
    assert_eq!(bodies(&incoming(&mut beta))[1], "second");
}

#[test]
fn a_waiting_send_waits_for_room_in_the_outbound_buffer() {
    let now = Instant::now();
    let limit = 2 << 20;
    let (mut alpha, _beta) = pair_with(
        LinkSettings {
            buffer_limit: limit,
            ..settings()
        },
        now,
    );
    let told = Told::default();
    alpha.send(&to("a"), quarter(), None, &mut None).unwrap();
    alpha.send(&to("b"), quarter(), None, &mut None).unwrap();
    assert!(alpha
        .send_when_ready(&to("c"), Message::from("c"), None, false, ready(&told))
        .is_some());
    while alpha.poll_transmit().is_some() {
        alpha.transmitted(now);
    }
    deliver_all(&mut alpha);
    assert_eq!(*told.borrow(), [Ok(())]);
}

/// Fills alpha's plain link window: a full window for each of `slow` and
/// two others.
fn fill_link(alpha: &mut Link) {
    fill(alpha, "slow");
    for other in ["x", "y"] {
        fill(alpha, other);
    }
    assert!(matches!(
        alpha.send(&to("z"), Message::from("z"), None, &mut None),
        Err(Error::MailboxFull(_))
    ));
}

#[test]
fn a_forced_send_takes_the_reserve_and_arrives_forced() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    let told = Told::default();
    fill_link(&mut alpha);
    let id = alpha
        .send_when_ready(
            &to("slow"),
            Message::from("waits"),
            None,
            false,
            ready(&told),
        )
        .expect("no room: it waits");
    // Its sender's mailbox fills up: forced, it goes into the reserve.
    alpha.force(id);
    assert_eq!(
        alpha.send_when_ready(&to("slow"), quarter(), None, true, ready(&told)),
        None,
        "a forced send goes at once while the reserve has room"
    );
    deliver_all(&mut alpha);
    assert_eq!(*told.borrow(), [Ok(()), Ok(())]);
    // The reserve bounds forced sends too.
    for _ in 0..2 {
        alpha.send_when_ready(&to("slow"), quarter(), None, true, ready(&told));
    }
    let waits = alpha.send_when_ready(&to("slow"), quarter(), None, true, ready(&told));
    assert!(waits.is_some(), "the whole link window is full");
    deliver_all(&mut alpha);
    assert_eq!(told.borrow().len(), 4);

    // Beta sees which sends came in the reserve: the four forced ones.
    assert_eq!(settle_all(&mut alpha, &mut beta, now), 4);
    deliver_all(&mut alpha);
    assert_eq!(told.borrow().len(), 5, "the credits let the last one go");
    assert!(!alpha.is_closed() && !beta.is_closed());
}

#[test]
fn sends_unsettled_when_the_connection_ends_are_in_doubt_and_waiting_ones_fail() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    let told = Told::default();
    for _ in 0..3 {
        alpha.send(&to("w"), quarter(), None, &mut None).unwrap();
    }
    alpha
        .send(&to("v"), Message::from("v"), None, &mut None)
        .unwrap();
    carry(&mut alpha, &mut beta, now);
    let got = receipts(incoming(&mut beta));
    // Two of the sends to `w` are settled; one to `w` and the one to `v` not.
    for (target, receipt) in &got[..2] {
        beta.settle(*receipt, target, Ok(()));
    }
    carry(&mut beta, &mut alpha, now);
    assert!(incoming(&mut alpha).is_empty());
    for _ in 0..3 {
        alpha.send(&to("w"), quarter(), None, &mut None).unwrap();
    }
    assert!(alpha
        .send_when_ready(&to("w"), quarter(), None, false, ready(&told))
        .is_some());
    let unsettled = alpha.disconnected(Phase::Backoff);
    assert_eq!(
        unsettled,
        Unsettled {
            unsent: 0,
            in_doubt: 2 + 3
        },
        "one each to w and v from before, three sent since"
    );
    deliver_all(&mut alpha);
    let lost = Error::ConnectionLost("beta".to_owned());
    assert_eq!(*told.borrow(), [Err(lost)]);
}

#[test]
fn a_send_kept_for_the_handshake_and_then_refused_gives_its_window_back() {
    let now = Instant::now();
    let mut alpha = Link::new(Some(name("beta")), settings());
    let mut beta = Link::new(None, settings());
    // Before the handshake only this node's limit is known.
    let big = Message::from("b".repeat(2000));
    for _ in 0..3 {
        alpha.send(&to("w"), big.clone(), None, &mut None).unwrap();
    }
    alpha
        .send(&to("w"), Message::from("small"), None, &mut None)
        .unwrap();
    let small_peer = config("beta").with_max_message_size(1000);
    let refused = connect_as(&mut alpha, &mut beta, 1, now, &small_peer);
    let too_large = Error::MessageTooLarge {
        size: 2000,
        max: 1000,
    };
    assert_eq!(refused, vec![too_large; 3]);
    assert_eq!(
        alpha.sent.total(),
        flow::cost(5),
        "only the small one holds window"
    );
    assert_eq!(alpha.sent.unsettled_sends(), 1);
    carry(&mut alpha, &mut beta, now);
    assert_eq!(bodies(&incoming(&mut beta)), ["small"]);
}

// ----- senders and remote watches (protocol version 2) -------------------------

fn wire(index: u32) -> WireRef {
    WireRef {
        shard: 1,
        index,
        generation: 2,
    }
}

/// Worker `index` of alpha's node.
fn worker(index: u32) -> WorkerRef {
    wire(index).local()
}

/// `alpha` watches beta's worker `target` for its worker `watcher`; returns
/// the watch's id as beta saw it and alpha's answer channel.
fn watch(
    alpha: &mut Link,
    beta: &mut Link,
    watcher: WorkerRef,
    target: &str,
    now: Instant,
) -> (u64, flume::Receiver<Result<Message>>) {
    let (tx, rx) = flume::unbounded();
    alpha.watch(now, watcher, &to(target), tx).unwrap();
    carry(alpha, beta, now);
    match incoming(beta).as_slice() {
        [Incoming::Watch {
            id,
            target: got,
            watcher: by,
        }] => {
            assert_eq!(*by, WireRef::of(watcher));
            let want = match target.strip_prefix('#') {
                Some(_) => WorkerAddr::Ref(WireRef::of(target.parse().unwrap())),
                None => WorkerAddr::from(target),
            };
            assert_eq!(*got, want);
            (*id, rx)
        }
        other => panic!("expected one watch, got {other:?}"),
    }
}

/// Delivers the answers alpha decoded (from `incoming`) or handed out.
fn deliver_answers(alpha: &mut Link) {
    for incoming in incoming(alpha) {
        match incoming {
            Incoming::Answer(answer) => answer.deliver(),
            other => panic!("expected only answers, got {other:?}"),
        }
    }
    for answer in answers(alpha) {
        answer.deliver();
    }
}

/// Beta answers alpha's watches `(id, reference)`; alpha hands the answers out.
fn resolve(alpha: &mut Link, beta: &mut Link, answers: &[(u64, &str)], now: Instant) {
    for &(id, reference) in answers {
        beta.reply(2, id, Ok(Message::from(reference.to_owned())));
    }
    carry(beta, alpha, now);
    deliver_answers(alpha);
}

fn exits(link: &mut Link) -> Vec<Exit> {
    std::iter::from_fn(|| link.poll_exit()).collect()
}

fn exit(watcher: WorkerRef, who: WireRef, reason: ExitReason) -> Exit {
    Exit {
        watcher,
        who,
        node: name("beta"),
        reason,
    }
}

#[test]
fn sends_and_asks_carry_their_senders_reference() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    let asker = TestAsker::default();
    let from = Some(wire(7));
    alpha.send(&to("w"), "one".into(), from, &mut None).unwrap();
    alpha
        .send(&to("w"), "two".into(), None, &mut Some(asker))
        .unwrap();
    carry(&mut alpha, &mut beta, now);
    let got = incoming(&mut beta);
    assert!(
        matches!(&got[..], [Incoming::Send { from: Some(r), .. }, Incoming::Ask { from: None, .. }] if *r == wire(7)),
        "{got:?}"
    );
    // To a reference: the target is that reference on the wire.
    alpha
        .send(&to("#1.3.2"), "back".into(), None, &mut None)
        .unwrap();
    carry(&mut alpha, &mut beta, now);
    let got = incoming(&mut beta);
    let target = Some(WorkerAddr::Ref(wire(3)));
    assert!(
        matches!(&got[..], [Incoming::Send { target: t, .. }] if *t == target),
        "{got:?}"
    );
}

#[test]
fn a_version_1_link_carries_no_sender_and_refuses_watches_and_references() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    alpha.version = Some(1);
    alpha
        .send(&to("w"), "hi".into(), Some(wire(7)), &mut None)
        .unwrap();
    carry(&mut alpha, &mut beta, now);
    assert!(matches!(
        &incoming(&mut beta)[..],
        [Incoming::Send { from: None, .. }]
    ));
    let (tx, _rx) = flume::unbounded();
    let refused = alpha.watch(now, worker(1), &to("w"), tx).unwrap_err();
    assert!(
        matches!(&refused, Error::NoRoute(why) if why.contains("protocol 1")),
        "{refused}"
    );
    let refused = alpha.send(&to("#1.3.2"), "x".into(), None, &mut None);
    assert!(matches!(refused, Err(Error::NoRoute(_))), "{refused:?}");
}

#[test]
fn a_watch_is_answered_with_the_reference_and_fires_once_when_the_worker_ends() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    let w = worker(1);
    let (id, answer) = watch(&mut alpha, &mut beta, w, "greeter", now);
    resolve(&mut alpha, &mut beta, &[(id, "#1.9.2")], now);
    assert_eq!(answer.try_recv().unwrap().unwrap(), "#1.9.2");
    assert!(exits(&mut alpha).is_empty());

    let panicked = ExitReason::Panicked("boom".into());
    beta.exited(2, id, WireRef::of(w), wire(9), &panicked);
    beta.exited(2, id, WireRef::of(w), wire(9), &ExitReason::Stopped);
    carry(&mut beta, &mut alpha, now);
    assert!(incoming(&mut alpha).is_empty());
    assert_eq!(exits(&mut alpha), [exit(w, wire(9), panicked)], "once");
    assert!(!alpha.unwatch(w, &to("greeter")), "fired already");
}

#[test]
fn an_exit_notice_before_the_answer_resolves_the_watch_and_fires_it() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    let w = worker(1);
    let (id, answer) = watch(&mut alpha, &mut beta, w, "#1.9.2", now);
    beta.exited(2, id, WireRef::of(w), wire(9), &ExitReason::NoSuchWorker);
    resolve(&mut alpha, &mut beta, &[(id, "#1.9.2")], now);
    assert_eq!(answer.try_recv().unwrap().unwrap(), "#1.9.2");
    assert_eq!(
        exits(&mut alpha),
        [exit(w, wire(9), ExitReason::NoSuchWorker)]
    );
    assert!(answer.try_recv().is_err(), "the late reply is dropped");
}

#[test]
fn a_lost_connection_fires_every_watch_once_and_a_new_one_brings_none_back() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    let (a, b) = (worker(1), worker(2));
    let (first, _) = watch(&mut alpha, &mut beta, a, "greeter", now);
    let (second, _) = watch(&mut alpha, &mut beta, b, "greeter", now);
    let (pending, waiting) = watch(&mut alpha, &mut beta, b, "other", now);
    resolve(
        &mut alpha,
        &mut beta,
        &[(first, "#1.9.2"), (second, "#1.9.2")],
        now,
    );

    alpha.close(LinkError::Closed);
    alpha.disconnected(Phase::Backoff);
    let mut lost = exits(&mut alpha);
    lost.sort_by_key(|e| e.watcher);
    assert_eq!(
        lost,
        [
            exit(a, wire(9), ExitReason::NodeLost),
            exit(b, wire(9), ExitReason::NodeLost)
        ]
    );
    deliver_answers(&mut alpha);
    let failed = waiting.try_recv().unwrap().unwrap_err();
    assert!(matches!(failed, Error::ConnectionLost(_)), "{failed:?}");

    // The peer still thinks the watches live; its notices on the next
    // connection find none.
    let mut beta = Link::new(None, settings());
    alpha.set_phase(Phase::Connecting);
    connect(&mut alpha, &mut beta, 3, now);
    for id in [first, second, pending] {
        beta.exited(4, id, WireRef::of(a), wire(9), &ExitReason::Stopped);
    }
    carry(&mut beta, &mut alpha, now);
    assert!(incoming(&mut alpha).is_empty());
    assert!(exits(&mut alpha).is_empty(), "nothing resurrected");
}

#[test]
fn unwatch_takes_the_watch_out_and_tells_the_peer() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    let w = worker(1);
    let (by_name, _) = watch(&mut alpha, &mut beta, w, "greeter", now);
    let (by_ref, _) = watch(&mut alpha, &mut beta, w, "other", now);
    resolve(
        &mut alpha,
        &mut beta,
        &[(by_name, "#1.9.2"), (by_ref, "#1.8.2")],
        now,
    );

    assert!(alpha.unwatch(w, &to("greeter")));
    assert!(!alpha.unwatch(w, &to("greeter")), "once");
    assert!(
        !alpha.unwatch(worker(2), &to("#1.8.2")),
        "not that watcher's"
    );
    assert!(
        alpha.unwatch(w, &to("#1.8.2")),
        "by the watched worker's reference"
    );
    carry(&mut alpha, &mut beta, now);
    let got = incoming(&mut beta);
    assert!(
        matches!(&got[..], [Incoming::Unwatch { id: a }, Incoming::Unwatch { id: b }] if (*a, *b) == (by_name, by_ref)),
        "{got:?}"
    );
    // A notice the peer sent before it heard is dropped.
    beta.exited(2, by_name, WireRef::of(w), wire(9), &ExitReason::Stopped);
    carry(&mut beta, &mut alpha, now);
    assert!(incoming(&mut alpha).is_empty());
    assert!(exits(&mut alpha).is_empty());
}

#[test]
fn a_pair_is_watched_once() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    let w = worker(1);
    let (first, one) = watch(&mut alpha, &mut beta, w, "greeter", now);
    let (again, two) = watch(&mut alpha, &mut beta, w, "#1.9.2", now);
    resolve(
        &mut alpha,
        &mut beta,
        &[(first, "#1.9.2"), (again, "#1.9.2")],
        now,
    );
    assert_eq!(one.try_recv().unwrap().unwrap(), "#1.9.2");
    assert_eq!(two.try_recv().unwrap().unwrap(), "#1.9.2");
    carry(&mut alpha, &mut beta, now);
    assert!(matches!(&incoming(&mut beta)[..], [Incoming::Unwatch { id }] if *id == again));
    for id in [first, again] {
        beta.exited(2, id, WireRef::of(w), wire(9), &ExitReason::Stopped);
    }
    carry(&mut beta, &mut alpha, now);
    assert!(incoming(&mut alpha).is_empty());
    assert_eq!(exits(&mut alpha), [exit(w, wire(9), ExitReason::Stopped)]);
}

#[test]
fn a_watch_unanswered_in_time_fails_and_is_unwatched() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    let (id, answer) = watch(&mut alpha, &mut beta, worker(1), "slow", now);
    alpha.handle_timeout(now + 11 * SECOND);
    deliver_answers(&mut alpha);
    let failed = answer.try_recv().unwrap().unwrap_err();
    assert!(matches!(failed, Error::Timeout { .. }), "{failed:?}");
    carry(&mut alpha, &mut beta, now + 11 * SECOND);
    let got = incoming(&mut beta);
    assert!(
        matches!(&got[..], [Incoming::Unwatch { id: u }] if *u == id),
        "{got:?}"
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
        alpha.send(&to("w"), quarter(), None, &mut None).unwrap();
    }
    carry(&mut alpha, &mut beta, now);
    let got = incoming(&mut beta);
    assert_eq!(got.len(), 8);
    assert!(got
        .iter()
        .all(|i| matches!(i, Incoming::Send { receipt: None, .. })));
}

#[test]
fn malformed_watch_frames_get_a_clear_error_and_keep_the_link() {
    let now = Instant::now();
    let (mut alpha, mut beta) = pair(now);
    // A watch without target or watcher, made as a plain request.
    let (tx, answer) = flume::unbounded();
    let body = Message::default();
    alpha
        .request(now, ControlOp::Watch, None, body, tx)
        .unwrap();
    // A watch of a worker id; an exit notice with an unknown reason and
    // one for a pending watch without its worker.
    let id_target = Envelope::new(
        Kind::Control {
            id: 40,
            op: ControlOp::Watch,
        },
        Some(WorkerAddr::Id(3)),
        "",
    )
    .with_sender(WorkerAddr::Ref(wire(1)));
    alpha.push(id_target).unwrap();
    let (tx, _pending) = flume::unbounded();
    alpha.watch(now, worker(1), &to("greeter"), tx).unwrap();
    carry(&mut alpha, &mut beta, now);
    let got = incoming(&mut beta);
    let whys: Vec<&str> = got
        .iter()
        .filter_map(|i| match i {
            Incoming::Malformed { why, .. } => Some(*why),
            _ => None,
        })
        .collect();
    assert_eq!(
        whys,
        [
            "a watch needs a target",
            "a watch target must be a name or a reference"
        ]
    );
    let Some(Incoming::Watch { id: pending, .. }) = got.last() else {
        panic!("the well-formed watch comes through: {got:?}")
    };
    let unknown = Envelope::new(
        Kind::Control {
            id: *pending,
            op: ControlOp::Exited,
        },
        Some(WorkerAddr::Ref(wire(1))),
        "exploded",
    )
    .with_sender(WorkerAddr::Ref(wire(9)));
    beta.push(unknown).unwrap();
    let anonymous = Envelope::new(
        Kind::Control {
            id: *pending,
            op: ControlOp::Exited,
        },
        Some(WorkerAddr::Ref(wire(1))),
        "stopped",
    );
    beta.push(anonymous).unwrap();
    carry(&mut beta, &mut alpha, now);
    let got = incoming(&mut alpha);
    assert!(matches!(&got[0], Incoming::Answer(_)), "{got:?}");
    let whys: Vec<&str> = got[1..]
        .iter()
        .map(|i| match i {
            Incoming::Malformed { why, .. } => *why,
            other => panic!("expected the malformed notices, got {other:?}"),
        })
        .collect();
    assert_eq!(
        whys,
        [
            "an exit notice with an unknown reason",
            "an exit notice without its worker's reference"
        ]
    );
    for incoming in got {
        if let Incoming::Answer(answer) = incoming {
            answer.deliver();
        }
    }
    let refused = answer.try_recv().unwrap().unwrap_err();
    assert_eq!(
        refused,
        Error::InvalidMessage("a watch needs a target".into())
    );
    assert!(exits(&mut alpha).is_empty());

    // Both ends are still up and carry traffic.
    assert!(!alpha.is_closed() && !beta.is_closed());
    alpha
        .send(&to("w"), "still here".into(), None, &mut None)
        .unwrap();
    carry(&mut alpha, &mut beta, now);
    assert_eq!(bodies(&incoming(&mut beta)), ["still here"]);
}

/// `pinger`'s heartbeat tick at `at`, when it pings: `echoer` reads the
/// ping at once and `pinger` reads the pong at `back`. Neither is delivered.
fn ping(pinger: &mut Link, echoer: &mut Link, at: Instant, back: Instant) {
    pinger.handle_timeout(at);
    assert!(carry(pinger, echoer, at) > 0, "a ping");
    assert!(incoming(echoer).is_empty(), "a ping is not delivered");
    assert!(carry(echoer, pinger, back) > 0, "a pong");
    assert!(incoming(pinger).is_empty(), "a pong is not delivered");
}

#[test]
fn a_pong_gives_the_round_trip_the_clock_says() {
    let t0 = Instant::now();
    let (mut alpha, mut beta) = pair(t0);
    let tick = settings().tick();
    assert_eq!(alpha.round_trips(), RoundTrips::default());

    // Alpha is idle for the interval: it pings, and the pong is back 30 ms
    // later.
    ping(&mut alpha, &mut beta, t0 + tick, t0 + tick + 30 * MS);
    assert_eq!(alpha.take_round_trip(), Some(nanos(30 * MS)));
    assert_eq!(alpha.take_round_trip(), None, "taken once");

    // The next ping (a full interval after the first was written) has its
    // pong back after 10 ms.
    let t1 = t0 + 3 * tick;
    ping(&mut alpha, &mut beta, t1, t1 + 10 * MS);
    assert_eq!(alpha.take_round_trip(), Some(nanos(10 * MS)));
    assert_eq!(
        alpha.round_trips(),
        RoundTrips {
            samples: 2,
            last: nanos(10 * MS),
            min: nanos(10 * MS),
            max: nanos(30 * MS),
            sum: nanos(40 * MS),
        }
    );
    assert_eq!(alpha.round_trips().mean(), nanos(20 * MS));
    assert_eq!(beta.round_trips().samples, 0, "beta measured nothing yet");
}

#[test]
fn a_stale_or_unknown_pong_measures_nothing() {
    let t0 = Instant::now();
    let (mut alpha, mut beta) = pair(t0);
    let tick = settings().tick();
    // Ping 1 is not answered before ping 2 replaces it.
    alpha.handle_timeout(t0 + tick);
    carry(&mut alpha, &mut beta, t0 + tick);
    // Beta echoes both; only ping 2's pong counts, from ping 2's time.
    let t1 = t0 + 2 * tick;
    ping(&mut alpha, &mut beta, t1, t1 + 5 * MS);
    assert_eq!(alpha.take_round_trip(), Some(nanos(5 * MS)));
    assert_eq!(alpha.round_trips().samples, 1);

    // A pong nobody asked for, and heartbeat text that is neither.
    for text in ["pong 99", "pong x", "hello", ""] {
        let envelope = Envelope::new(Kind::Heartbeat, None, text);
        beta.push(envelope).unwrap();
    }
    carry(&mut beta, &mut alpha, t0 + 3 * tick);
    assert!(incoming(&mut alpha).is_empty());
    assert!(alpha.poll_transmit().is_none(), "nothing is echoed");
    assert_eq!(alpha.take_round_trip(), None);
    assert_eq!(alpha.round_trips().samples, 1);
}

#[test]
fn both_ends_of_an_idle_link_ping_although_each_echoes_the_other() {
    let t0 = Instant::now();
    let (mut alpha, mut beta) = pair(t0);
    let mut now = t0;
    while now.duration_since(t0) < 10 * SECOND {
        now = next_timeout(&mut alpha, &mut beta);
        // Bytes take 1 ms each way; each side echoes what it reads at once.
        // Alpha's ping reaches beta at +1 ms and its pong is back at +2 ms;
        // beta's ping reaches alpha at +2 ms and its pong is back at +3 ms.
        for step in [1, 3] {
            carry(&mut alpha, &mut beta, now + step * MS);
            incoming(&mut beta);
            carry(&mut beta, &mut alpha, now + (step + 1) * MS);
            incoming(&mut alpha);
        }
    }
    let (a, b) = (alpha.round_trips(), beta.round_trips());
    assert!(a.samples >= 5 && b.samples >= 5, "{a:?} {b:?}");
    assert_eq!((a.min, a.max), (nanos(2 * MS), nanos(2 * MS)), "{a:?}");
    assert_eq!((b.min, b.max), (nanos(3 * MS), nanos(3 * MS)), "{b:?}");
    assert!(!alpha.is_closed() && !beta.is_closed());
}

#[test]
fn echoing_a_ping_does_not_count_as_traffic_for_the_interval() {
    let t0 = Instant::now();
    let (mut alpha, mut beta) = pair(t0);
    let tick = settings().tick();
    // Beta writes its pong, and nothing else, at t0 + tick.
    ping(&mut alpha, &mut beta, t0 + tick, t0 + tick);
    // Half an interval later beta has sent nothing but a pong for 1.5
    // intervals: it pings.
    let t1 = t0 + tick + tick / 2;
    ping(&mut beta, &mut alpha, t1, t1 + 4 * MS);
    assert_eq!(beta.take_round_trip(), Some(nanos(4 * MS)));
}

const MS: Duration = Duration::from_millis(1);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap()
}
