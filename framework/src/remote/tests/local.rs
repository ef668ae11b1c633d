//! Messages from this process: they wait in the actor's inbox with those
//! from other nodes, inline when small, and are handled in runs.

use std::time::Duration;

use actix::Handler;
use rkyv::{Archive, Deserialize, Serialize};
use tokio::time::timeout;

use super::{Add, Boom, Calc, Gate, Note, Seen, T, assert_few_drains, node};
use crate::actor::{DEFAULT_MAILBOX, Deliver, Failure};
use crate::remote::AskError;

/// A message of 100 bytes, the most that waits inline with a reply sink;
/// noted by its first byte.
#[derive(crate::Message, Archive, Serialize, Deserialize)]
#[message(result = ())]
pub(super) struct Hundred(pub(super) [u8; 100]);

impl Handler<Hundred> for Gate {
    type Result = ();
    fn handle(&mut self, Hundred(bytes): Hundred, _: &mut actix::Context<Self>) {
        self.seen.push(u32::from(bytes[0]));
    }
}

/// A message too large to wait inline (320 bytes); noted by its first word.
#[derive(crate::Message, Archive, Serialize, Deserialize)]
#[message(result = ())]
pub(super) struct Wide(pub(super) [u64; 40]);

impl Handler<Wide> for Gate {
    type Result = ();
    fn handle(&mut self, Wide(words): Wide, _: &mut actix::Context<Self>) {
        self.seen.push(words[0] as u32);
    }
}

/// A burst of local tells, with asks among them, goes through the actor's
/// inbox: every ask sees every tell sent before it (one sender's messages
/// keep their order, tells and asks alike), and the burst takes far fewer
/// mailbox items (drains) than messages — none would mean the actix
/// mailbox carried them one by one.
#[actix_rt::test]
async fn a_burst_of_local_tells_and_asks_keeps_its_order_in_few_drains() {
    const N: u32 = 5_000;
    let a = node(false, DEFAULT_MAILBOX).await;
    let gate = a.spawn(Gate::default());
    for i in 0..N {
        timeout(T, gate.tell(Note(i))).await.unwrap().unwrap();
        if i % 1000 == 999 {
            let seen = timeout(T, gate.ask(Seen)).await.unwrap().unwrap();
            assert_eq!(seen.len(), i as usize + 1, "an ask overtook a tell");
        }
    }
    let seen = timeout(T, gate.ask(Seen)).await.unwrap().unwrap();
    assert_eq!(seen, (0..N).collect::<Vec<_>>(), "lost or reordered tells");
    let entry = a.0.registry.get(gate.id()).expect("the gate lives here");
    assert_few_drains(&entry, N);
}

/// A small message waits in the inbox's own memory (no allocation of its
/// own); one larger than the inline room waits on the heap and arrives the
/// same.
#[actix_rt::test]
async fn a_small_local_message_waits_inline_and_a_large_one_arrives_too() {
    let a = node(false, DEFAULT_MAILBOX).await;
    let gate = a.spawn(Gate::default());
    let entry = a.0.registry.get(gate.id()).expect("the gate lives here");
    let small = crate::actor::Local::<Gate, Note>::boxed(Deliver::new(Note(1), None, None));
    assert!(!small.is_heap(), "a 4-byte message was boxed on the heap");
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let reply: crate::actor::ReplySink<()> = Box::new(move |r| {
        let _ = tx.send(r);
    });
    let slot = entry.try_slot().expect("a free slot");
    let asked = crate::actor::Local::<Gate, Hundred>::boxed(Deliver::new(
        Hundred([1; 100]),
        Some(reply),
        Some(slot),
    ));
    assert!(!asked.is_heap(), "an ask of a 100-byte message was boxed");
    let wide = crate::actor::Local::<Gate, Wide>::boxed(Deliver::new(Wide([0; 40]), None, None));
    assert!(wide.is_heap());
    drop((small, asked, wide));

    timeout(T, gate.tell(Note(1))).await.unwrap().unwrap();
    let mut words = [0u64; 40];
    words[0] = 2;
    timeout(T, gate.tell(Wide(words))).await.unwrap().unwrap();
    timeout(T, gate.tell(Hundred([3; 100])))
        .await
        .unwrap()
        .unwrap();
    let seen = timeout(T, gate.ask(Seen)).await.unwrap().unwrap();
    assert_eq!(seen, vec![1, 2, 3]);
}

/// An ask that waits in the inbox behind a message that stops the actor is
/// answered `Stopped` as the actor goes (its mailbox, with the drain that
/// would have handled the ask, is dropped), not left to its timeout.
#[actix_rt::test]
async fn an_ask_behind_a_stop_is_answered_stopped_as_the_actor_goes() {
    let a = node(false, DEFAULT_MAILBOX).await;
    let calc = a
        .spawn(Calc::default())
        .with_timeout(Duration::from_secs(120));
    timeout(T, calc.tell(Boom)).await.unwrap().unwrap();
    let answer = timeout(T, calc.ask(Add(1)))
        .await
        .expect("the ask behind the stop was left waiting");
    assert!(
        matches!(answer, Err(AskError::Failed(Failure::Stopped))),
        "{answer:?}"
    );
}

/// A tell that needs no wait is sent in its future's first poll, and that
/// future is hardly larger than its message: the state of the waits lives
/// on the heap, and only a tell that must wait puts it there (every
/// `.await` moves the future; the waits' state alone is 1,872 bytes for a
/// 100-byte message, and the `async fn` held it inline). One that must wait — a third tell into a mailbox
/// of two that its actor has not emptied — is pending, then sent, in order.
#[actix_rt::test]
async fn a_tell_that_needs_no_wait_is_sent_in_its_first_poll() {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    let size = std::mem::size_of::<crate::remote::Tell<'static, Gate, Hundred>>();
    assert!(
        size <= std::mem::size_of::<Hundred>() + 32,
        "the future of a tell of 100 bytes is {size} bytes: the waits' state is inline again"
    );
    let a = node(false, 2).await;
    let gate = a.spawn(Gate::default());
    let mut cx = Context::from_waker(Waker::noop());
    for i in 0..2 {
        let mut tell = gate.tell(Note(i));
        assert!(
            matches!(Pin::new(&mut tell).poll(&mut cx), Poll::Ready(Ok(()))),
            "tell {i} had a free slot and should have been sent in its first poll"
        );
    }
    let mut third = gate.tell(Note(2));
    assert!(
        Pin::new(&mut third).poll(&mut cx).is_pending(),
        "a third tell into a mailbox of two, not emptied yet, should wait"
    );
    timeout(T, third).await.unwrap().unwrap();
    let seen = timeout(T, gate.ask(Seen)).await.unwrap().unwrap();
    assert_eq!(seen, [0, 1, 2], "lost or reordered tells");
}
