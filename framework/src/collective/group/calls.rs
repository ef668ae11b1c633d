//! The collectives of a [`Group`]: through its shared-memory arena when
//! every member is on one machine, over QUIC otherwise.

use crate::actor::Element;
use crate::collective::local::kind;
use crate::collective::relay::ReduceBuffer;
use crate::reduce::{ReduceOp, Reducible, Schedule};

use super::inbox::{ALL_GATHER, ALL_REDUCE, BARRIER, BROADCAST, GATHER, REDUCE, SCATTER, head};
use super::{CollectiveError, Group};

impl Group {
    /// Every member ends with the same bits: the fold of every member's
    /// `data` (through shared memory the left fold in rank order; over QUIC
    /// the order of [`crate::reduce::Topology::allreduce`]'s schedule, see
    /// [`Schedule::reference`]).
    pub async fn all_reduce<T, B>(
        &mut self,
        data: &mut B,
        op: ReduceOp<T>,
    ) -> Result<(), CollectiveError>
    where
        T: Reducible,
        B: ReduceBuffer<T> + ?Sized,
    {
        let data = data.elements_mut();
        if let Some(local) = &mut self.local {
            return Ok(local.all_reduce(data, &op).await?);
        }
        let head = head(ALL_REDUCE, size_of::<T>(), op.code(), 0, data.len(), 0);
        if self.hierarchical {
            let leaders = self.topology.leaders();
            let schedule = Schedule::allreduce(data.len(), leaders.len(), size_of::<T>())
                .map_err(|e| CollectiveError::Mismatch(e.to_string()))?;
            return self
                .exchange_call(head, async |g: &mut Self| {
                    // Within the machine to its leader (index 0 of the
                    // arena), between the leaders over QUIC, then back.
                    if let Some(host) = &mut g.host_local {
                        host.reduce(data, &op, 0).await?;
                    }
                    g.run_schedule_over(&schedule, &leaders, data, &op).await?;
                    if let Some(host) = &mut g.host_local {
                        host.broadcast(data, 0).await?;
                    }
                    Ok(())
                })
                .await;
        }
        let schedule = self.topology.allreduce(data.len(), size_of::<T>());
        self.exchange_call(head, async |g: &mut Self| {
            g.run_schedule(&schedule, data, &op).await
        })
        .await
    }

    /// Rank `root` ends with the left fold in rank order of every member's
    /// `data` (on every path); the others keep theirs.
    pub async fn reduce<T, B>(
        &mut self,
        data: &mut B,
        op: ReduceOp<T>,
        root: usize,
    ) -> Result<(), CollectiveError>
    where
        T: Reducible,
        B: ReduceBuffer<T> + ?Sized,
    {
        let data = data.elements_mut();
        if let Some(local) = &mut self.local {
            return Ok(local.reduce(data, &op, root).await?);
        }
        let bad = self.bad_root(root);
        let head = head(REDUCE, size_of::<T>(), op.code(), root, data.len(), bad);
        self.exchange_call(head, async |g: &mut Self| {
            // Every part straight to the root, which folds them in rank
            // order: the same result as through shared memory.
            if g.rank != root {
                let part = g.part(data);
                return g.post(root, part).await;
            }
            let all = g.collect(data).await?;
            let n = data.len();
            let parts: Vec<&[T]> = (0..g.ranks()).map(|r| &all[r * n..(r + 1) * n]).collect();
            if let Some(folded) = op.fold(&parts) {
                data.copy_from_slice(&folded);
            }
            Ok(())
        })
        .await
    }

    /// Every member ends with rank `root`'s `data`.
    pub async fn broadcast<T, B>(
        &mut self,
        data: &mut B,
        root: usize,
    ) -> Result<(), CollectiveError>
    where
        T: Element,
        B: ReduceBuffer<T> + ?Sized,
    {
        let data = data.elements_mut();
        if let Some(local) = &mut self.local {
            return Ok(local.broadcast(data, root).await?);
        }
        let bad = self.bad_root(root);
        let head = head(BROADCAST, size_of::<T>(), 0, root, data.len(), bad);
        let tree = self.topology.tree();
        self.exchange_call(head, async |g: &mut Self| {
            let top = tree.root();
            if root != top {
                if g.rank == root {
                    let part = g.part(data);
                    g.post(top, part).await?;
                } else if g.rank == top {
                    g.take_part(root, data).await?;
                }
            }
            // Down the tree, children in order: every member copies its
            // parent's buffer.
            if let Some(parent) = tree.parent(g.rank) {
                g.take_part(parent, data).await?;
            }
            let part = g.part(data);
            for &child in tree.children(g.rank) {
                g.post(child, part.clone()).await?;
            }
            Ok(())
        })
        .await
    }

    /// Rank `root` gets every member's `data` concatenated in rank order
    /// (`Some`); the others get `None`.
    pub async fn gather<T: Element>(
        &mut self,
        data: &[T],
        root: usize,
    ) -> Result<Option<Vec<T>>, CollectiveError> {
        if let Some(local) = &mut self.local {
            return Ok(local.gather(data, root).await?);
        }
        let bad = self.bad_root(root);
        let head = head(GATHER, size_of::<T>(), 0, root, data.len(), bad);
        self.exchange_call(head, async |g: &mut Self| {
            if g.rank != root {
                let part = g.part(data);
                g.post(root, part).await?;
                return Ok(None);
            }
            g.collect(data).await.map(Some)
        })
        .await
    }

    /// Every member gets every member's `data` concatenated in rank order.
    pub async fn all_gather<T: Element>(&mut self, data: &[T]) -> Result<Vec<T>, CollectiveError> {
        if let Some(local) = &mut self.local {
            return Ok(local.all_gather(data).await?);
        }
        let head = head(ALL_GATHER, size_of::<T>(), 0, 0, data.len(), 0);
        self.exchange_call(head, async |g: &mut Self| {
            let part = g.part(data);
            g.post_all(&part).await?;
            g.collect(data).await
        })
        .await
    }

    /// Every member's part in rank order, this member's own being `mine`.
    async fn collect<T: Element>(&mut self, mine: &[T]) -> Result<Vec<T>, CollectiveError> {
        let n = mine.len();
        let mut out = Vec::with_capacity(n * self.ranks());
        for r in 0..self.ranks() {
            if r == self.rank {
                out.extend_from_slice(mine);
                continue;
            }
            let start = out.len();
            out.extend_from_slice(mine);
            self.take_part(r, &mut out[start..]).await?;
        }
        Ok(out)
    }

    /// Rank `root`'s `send` (`ranks × recv.len()` elements, one part per
    /// member in rank order) is split: each member gets its part in `recv`.
    pub async fn scatter<T: Element>(
        &mut self,
        send: &[T],
        recv: &mut [T],
        root: usize,
    ) -> Result<(), CollectiveError> {
        if let Some(local) = &mut self.local {
            return Ok(local.scatter(send, recv, root).await?);
        }
        let n = recv.len();
        let mut bad = self.bad_root(root);
        if bad == 0 && self.rank == root && send.len() != n * self.ranks() {
            bad = u64::from(kind::BAD_SCATTER_LEN);
        }
        let head = head(SCATTER, size_of::<T>(), 0, root, n, bad);
        self.exchange_call(head, async |g: &mut Self| {
            if g.rank == root {
                for r in 0..g.ranks() {
                    let mine = &send[r * n..(r + 1) * n];
                    if r == g.rank {
                        recv.copy_from_slice(mine);
                    } else {
                        let part = g.part(mine);
                        g.post(r, part).await?;
                    }
                }
                Ok(())
            } else {
                g.take_part(root, recv).await
            }
        })
        .await
    }

    /// Returns once every member has called it.
    pub async fn barrier(&mut self) -> Result<(), CollectiveError> {
        if let Some(local) = &mut self.local {
            return Ok(local.barrier_call().await?);
        }
        self.exchange_call(head(BARRIER, 0, 0, 0, 0, 0), async |_: &mut Self| Ok(()))
            .await
    }
}
