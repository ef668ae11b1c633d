//! A schedule run in pieces: each chunk of a large buffer is sent as
//! pieces of at most [`PIECE_BYTES`], and a piece that arrived is applied
//! and sent on at once, while the chunk's later pieces are still on the
//! wire. Run whole, a member of a ring waited for a whole chunk (half the
//! buffer, with two members) before it reduced it and only then began the
//! next step's send: the links idled while it reduced, and it reduced while
//! nothing moved. Pieces also bound each message: a chunk of any size
//! travels in frames of about a MiB, so a buffer of several GiB reduces over
//! QUIC (whole, a chunk would pass the transport's largest frame, 1 GiB by
//! default, and be refused), and the receiver allocates pieces, not chunks.
//!
//! [`plan`] orders one member's moves (a pure function of its program and
//! the pieces of each chunk): first every send that needs nothing received,
//! then each receive in the schedule's order, each followed by the sends
//! that waited for it. A send of a chunk needs the receives of that chunk in
//! earlier steps; only receives change the buffer, so a piece sent right
//! after its last such receive carries what the whole run would have sent.
//! Receives keep the schedule's order (step, then the order to apply them),
//! so every member's sends of a step go out before it waits in a later one,
//! and no member waits for a piece that waits for it.

use std::ops::Range;

use crate::reduce::RankStep;

/// The most bytes of one piece (a 16 MiB AllReduce of two members sends
/// each half as 8 pieces).
pub(super) const PIECE_BYTES: usize = 1 << 20;

/// How many pieces a chunk of `elements` elements of `size` bytes each is
/// sent in (at least one).
pub(super) fn pieces(elements: usize, size: usize) -> usize {
    (elements * size.max(1)).div_ceil(PIECE_BYTES).max(1)
}

/// The elements of piece `k` of `chunk` cut into `n` pieces: equal runs,
/// the first ones one element longer where they do not divide evenly.
pub(super) fn piece_range(chunk: &Range<usize>, n: usize, k: usize) -> Range<usize> {
    let (len, n) = (chunk.len(), n.max(1));
    let (base, extra) = (len / n, len % n);
    let start = chunk.start + k * base + k.min(extra);
    start..start + base + usize::from(k < extra)
}

/// One move of a member: a piece of a transfer of its program, by the
/// index of the program's step and of the transfer in that step's sends or
/// receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Move {
    /// Post this piece of `program[at].sends[transfer]`.
    Send {
        at: usize,
        transfer: usize,
        piece: usize,
    },
    /// Wait for this piece of `program[at].receives[transfer]` and apply it.
    Receive {
        at: usize,
        transfer: usize,
        piece: usize,
    },
}

/// The order of one member's moves for `program`, its chunk `c` sent in
/// `pieces(c)` pieces (see the module docs).
pub(super) fn plan(program: &[RankStep], pieces: impl Fn(usize) -> usize) -> Vec<Move> {
    // The sends (step and transfer) that wait for each receive: a send
    // waits for the last receive of its chunk in an earlier step.
    let mut waiting: Vec<Vec<Vec<(usize, usize)>>> = program
        .iter()
        .map(|rs| vec![Vec::new(); rs.receives.len()])
        .collect();
    let mut moves = Vec::new();
    for (at, rs) in program.iter().enumerate() {
        for (transfer, t) in rs.sends.iter().enumerate() {
            let last = program[..at].iter().enumerate().rev().find_map(|(p, r)| {
                r.receives
                    .iter()
                    .rposition(|x| x.chunk == t.chunk)
                    .map(|i| (p, i))
            });
            match last {
                Some((p, i)) => waiting[p][i].push((at, transfer)),
                None => moves.extend((0..pieces(t.chunk)).map(|piece| Move::Send {
                    at,
                    transfer,
                    piece,
                })),
            }
        }
    }
    for (at, rs) in program.iter().enumerate() {
        for (transfer, t) in rs.receives.iter().enumerate() {
            for piece in 0..pieces(t.chunk) {
                moves.push(Move::Receive {
                    at,
                    transfer,
                    piece,
                });
                moves.extend(
                    waiting[at][transfer]
                        .iter()
                        .map(|&(at, transfer)| Move::Send {
                            at,
                            transfer,
                            piece,
                        }),
                );
            }
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::reduce::{ReduceOp, Schedule, Tree};

    #[test]
    fn pieces_cover_a_chunk_in_order_without_gaps() {
        for (len, n) in [(10, 3), (9, 3), (1, 1), (7, 7), (1000, 8), (3, 1)] {
            let chunk = 5..5 + len;
            let ranges: Vec<_> = (0..n).map(|k| piece_range(&chunk, n, k)).collect();
            assert_eq!(ranges[0].start, chunk.start);
            assert_eq!(ranges[n - 1].end, chunk.end);
            assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
            let (min, max) = (
                ranges.iter().map(Range::len).min().unwrap(),
                ranges.iter().map(Range::len).max().unwrap(),
            );
            assert!(max - min <= 1, "{ranges:?}");
        }
        // A 16 MiB AllReduce of f32 over two members: two 8 MiB chunks.
        assert_eq!(pieces(2 << 20, 4), 8);
        assert_eq!(pieces((2 << 20) + 1, 4), 9);
        assert_eq!(pieces(100, 8), 1);
        assert_eq!(pieces(0, 8), 1);
    }

    /// Runs every member's plan against the others', one move at a time
    /// where it can go (a receive waits for its piece), as the members'
    /// calls would; fails on a plan that waits forever. Returns each
    /// member's buffer.
    fn run(schedule: &Schedule, inputs: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
        let n = inputs.len();
        let chunks = schedule.chunks();
        let pieces_of = |c: usize| pieces(chunks[c].len(), PIECE_BYTES / 4);
        let programs: Vec<_> = (0..n).map(|r| schedule.program(r)).collect();
        let plans: Vec<_> = programs.iter().map(|p| plan(p, pieces_of)).collect();
        let mut data = inputs;
        let mut next = vec![0; n];
        // (to, from, step, chunk, piece) -> the piece's elements.
        let mut wire: HashMap<(usize, usize, usize, usize, usize), Vec<f64>> = HashMap::new();
        loop {
            let mut moved = false;
            for r in 0..n {
                while let Some(m) = plans[r].get(next[r]) {
                    match *m {
                        Move::Send {
                            at,
                            transfer,
                            piece,
                        } => {
                            let t = programs[r][at].sends[transfer];
                            let range = piece_range(&chunks[t.chunk], pieces_of(t.chunk), piece);
                            let key = (t.to, r, programs[r][at].step, t.chunk, piece);
                            assert!(wire.insert(key, data[r][range].to_vec()).is_none());
                        }
                        Move::Receive {
                            at,
                            transfer,
                            piece,
                        } => {
                            let t = programs[r][at].receives[transfer];
                            let key = (r, t.from, programs[r][at].step, t.chunk, piece);
                            let Some(incoming) = wire.remove(&key) else {
                                break;
                            };
                            let range = piece_range(&chunks[t.chunk], pieces_of(t.chunk), piece);
                            t.action
                                .apply(&ReduceOp::Sum, &mut data[r][range], &incoming);
                        }
                    }
                    next[r] += 1;
                    moved = true;
                }
            }
            if (0..n).all(|r| next[r] == plans[r].len()) {
                assert!(wire.is_empty(), "pieces sent and never taken");
                return data;
            }
            assert!(moved, "the plans wait for each other: {next:?}");
        }
    }

    #[test]
    fn every_plan_runs_to_the_allreduce_without_waiting_forever() {
        // Pieces of 4 elements here (`run` cuts a piece per PIECE_BYTES / 4
        // elements of 4 bytes), so chunks travel in several pieces.
        for n in [2, 3, 4, 5] {
            for len in [1, 7, 64, 129] {
                let inputs: Vec<Vec<f64>> = (0..n)
                    .map(|r| (0..len).map(|i| (r * 1000 + i) as f64).collect())
                    .collect();
                let want: Vec<f64> = (0..len)
                    .map(|i| (0..n).map(|r| (r * 1000 + i) as f64).sum())
                    .collect();
                let schedules = [
                    Schedule::ring(len, n).unwrap(),
                    Schedule::tree_allreduce(len, &Tree::binary(n).unwrap()),
                ];
                for schedule in &schedules {
                    for (r, got) in run(schedule, inputs.clone()).iter().enumerate() {
                        assert_eq!(got, &want, "rank {r} of {n}, {len} elements");
                    }
                }
            }
        }
    }

    #[test]
    fn a_ring_sends_a_reduced_piece_on_before_the_rest_of_its_chunk_arrived() {
        // Two members, two chunks of 8 MiB of f32: 8 pieces each.
        let schedule = Schedule::ring(4 << 20, 2).unwrap();
        let program = schedule.program(0);
        let moves = plan(&program, |c| pieces(schedule.chunks()[c].len(), 4));
        let position = |m: Move| moves.iter().position(|x| *x == m).expect("planned");
        let first_receive = position(Move::Receive {
            at: 0,
            transfer: 0,
            piece: 0,
        });
        let next_step_send = position(Move::Send {
            at: 1,
            transfer: 0,
            piece: 0,
        });
        let last_receive = position(Move::Receive {
            at: 0,
            transfer: 0,
            piece: 7,
        });
        assert_eq!(next_step_send, first_receive + 1, "{moves:?}");
        assert!(next_step_send < last_receive, "{moves:?}");
        // The first step's pieces all go out before the first wait.
        assert!(
            moves[..8]
                .iter()
                .all(|m| matches!(m, Move::Send { at: 0, .. }))
        );
        // Every piece of every transfer, once.
        assert_eq!(moves.len(), 4 * 8);
    }
}
