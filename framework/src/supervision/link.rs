//! Links, as OTP has them: two actors whose fates are tied. When one exits
//! abnormally (a panic, killed, its node lost), the other is killed with the
//! same reason; a normal stop or a shutdown does not travel. Works for
//! actors in this process and on other nodes.

use crate::actor::RemoteActor;
use crate::remote::{ActorRef, exit};

/// A link between two actors; [`Link::unlink`] cuts it.
pub struct Link {
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Link {
    /// Cuts the link: later exits no longer travel.
    pub fn unlink(self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Links `a` and `b`: an abnormal exit of either kills the other with the
/// same reason.
pub fn link<A: RemoteActor, B: RemoteActor>(a: &ActorRef<A>, b: &ActorRef<B>) -> Link {
    Link {
        tasks: [
            one_way(a.clone(), b.address().clone()),
            one_way(b.clone(), a.address().clone()),
        ],
    }
}

fn one_way<A: RemoteActor>(
    from: ActorRef<A>,
    to: crate::remote::ActorAddress,
) -> tokio::task::JoinHandle<()> {
    actix_rt::spawn(async move {
        let down = from.watch().await;
        if down.reason.is_normal() {
            return;
        }
        if let Err(e) = exit(&to, down.reason.clone()).await {
            tracing::warn!(from = %down.id, to = %to.id, "could not pass an exit along a link: {e}");
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix::Handler;
    use rkyv::{Archive, Deserialize, Serialize};
    use tokio::time::timeout;

    use super::link;
    use crate::actor::ExitReason;
    use crate::remote::Node;
    use crate::transport::Password;

    const T: Duration = Duration::from_secs(10);

    #[derive(crate::Actor, Archive, Serialize, Deserialize, Default)]
    #[actor(messages(Fail))]
    struct Linked;

    /// Panics with the text.
    #[derive(crate::Message, Archive, Serialize, Deserialize)]
    #[message(result = ())]
    struct Fail(String);

    impl Handler<Fail> for Linked {
        type Result = ();
        fn handle(&mut self, Fail(text): Fail, _: &mut actix::Context<Self>) {
            panic!("{text}");
        }
    }

    async fn node() -> Node {
        Node::builder()
            .password(Password::new("links".into()))
            .start()
            .await
            .unwrap()
    }

    #[actix_rt::test]
    async fn an_abnormal_exit_travels_both_ways_along_a_link() {
        let node = node().await;
        let (a, b, c) = (node.spawn(Linked), node.spawn(Linked), node.spawn(Linked));
        let _ab = link(&a, &b);
        let _bc = link(&b, &c);
        let (wa, wc) = (a.watch(), c.watch());
        let _ = timeout(T, b.ask(Fail("b broke".into()))).await.unwrap();
        let reason = ExitReason::Panic("b broke".into());
        assert_eq!(timeout(T, wa).await.unwrap().reason, reason);
        assert_eq!(timeout(T, wc).await.unwrap().reason, reason);
    }

    #[actix_rt::test]
    async fn a_normal_stop_does_not_travel_and_unlink_cuts_the_link() {
        let node = node().await;
        let (a, b, c) = (node.spawn(Linked), node.spawn(Linked), node.spawn(Linked));
        let _ab = link(&a, &b);
        node.0.registry.entry(a.id()).unwrap().stop();
        assert_eq!(
            timeout(T, a.watch()).await.unwrap().reason,
            ExitReason::Shutdown
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(node.0.registry.get(b.id()).is_some(), "b lives on");

        let bc = link(&b, &c);
        bc.unlink();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let _ = timeout(T, b.ask(Fail("alone".into()))).await.unwrap();
        assert_eq!(
            timeout(T, b.watch()).await.unwrap().reason,
            ExitReason::Panic("alone".into())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(node.0.registry.get(c.id()).is_some(), "c was unlinked");
    }
}
