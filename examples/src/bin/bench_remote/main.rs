//! Remote and local messaging costs of para||el, each measured against a raw
//! baseline in the same run (STYLE §7: compare ratios, not absolute numbers).
//!
//! Run with `cargo run --release -p parallel-examples --bin bench_remote`
//! (add `--json` for one JSON object per benchmark on stdout).
//!
//! The program starts a second process of itself on loopback (role in
//! `PARALLEL_EXAMPLE_ROLE`, password in `PARALLEL_PASSWORD`, never on the command
//! line). That process runs a para||el node that lets the first spawn a `Sink`
//! actor there, and a raw quinn server (`parallel_examples::raw`: the node's
//! TLS 1.3 set-up with ring, a fresh self-signed certificate that the client
//! pins by its SHA-256). It prints `RAW <addr> <fingerprint hex>` and
//! `READY <join line>`, and exits when its standard input closes, so it never
//! outlives the first process.
//!
//! | bench                   | framework                                   | baseline                                          |
//! |-------------------------|---------------------------------------------|---------------------------------------------------|
//! | `ask_rtt_p50_us`, `_p99`| sequential no-op `ask` to the remote `Sink`, the two processes on two CPUs (`parallel_examples::placement`; NaN on a machine with one) | 16-byte echo on one raw QUIC stream, in blocks alternating with the asks' |
//! | `ask_rtt_p50_us_one_cpu`, `_p99_one_cpu` | the same, both processes on one CPU | the same echo |
//! | `tell_msgs_per_s`       | 1 M `tell`s of 100 bytes, then one `ask`    | 1 M length-prefixed 100-byte frames, 64 KiB writes |
//! | `bulk_64mib_gbps`       | `ask` with a 64 MiB `Tensor<f32>`, summed in place | 64 MiB on one raw stream, summed as it arrives |
//! | `local_tell_msgs_per_s` | 1 M `ActorRef::tell` to a local actor       | 1 M actix `Addr::do_send` to a plain actix actor  |
//!
//! Beside the tell row the bench prints its floor, measured in the same
//! rounds: the raw stream carrying frames of the framework's size (a
//! tell's 6-byte header after the first to the same actor, then the
//! 100-byte message), which the raw server checks
//! with `rkyv::access`, deserializes and hands to a plain actix actor one by
//! one — the least a receiver of validated messages for actors does per
//! message, with none of the framework's protocol. Beside the 64 MiB
//! tensor row it prints its ceiling, also in the same rounds: the raw bulk
//! stream with its bytes copied into one buffer (its pages touched by an
//! earlier round) and summed after the last one — a message is whole and
//! contiguous before its handler sees a validated view of it, so no receive
//! of one is faster.
//!
//! The local pair runs each side in a fresh process of this program (role
//! `local ours` or `local actix`), three times, and counts the fastest run
//! (a first run in a fresh process pays for its memory's first touch; in a
//! process of its own actix ran at 7.6–9.9 M/s over three runs, twice): actix's
//! `do_send` queues all 1 M messages at once (it has no backpressure), and
//! freeing them left the allocator's heap so fragmented that whatever ran
//! next in that process paid for it (measured: `malloc_consolidate` and
//! `unlink_chunk` took 27 % of the samples of a run alternating the two, and
//! none when the framework's rounds ran alone; the framework's rounds after
//! an actix round ran at 5.8 M tells/s, alone at 10.4 M). Beside the
//! local row the bench prints actix with backpressure, run the same way
//! (role `local actix bounded`): the plain actix actor with a mailbox of the
//! framework's size, its sender waiting while it is full — `do_send` never
//! waits, so it queues the whole burst before the actor drains it, while a
//! sender with backpressure (the framework's `tell`, or actix's own
//! `try_send` and `send().await`) hands over about a mailbox at a time.
//! (Here it read 0.64–1.09 of `do_send`, and the framework's tell about
//! half of it: backpressure is not what the framework's local tell pays
//! for.) It also prints the floor of the local tell (role `local actix
//! guarded`): the plain actix actor, each message carrying by hand what the
//! framework's tell guarantees, in the fewest steps — a place in a mailbox
//! that every sender shares (one compare-and-swap to take it, given back
//! when the message is handled) and the handler run under `catch_unwind`
//! (a panic stops the actor, not its thread). Here it read 0.86 of
//! `do_send`, and the framework's tell 0.67 of it; counted with
//! `valgrind --tool=callgrind` (3 M tells), the tell executes about 160
//! instructions a message more than that floor (940 against 777): about
//! 107 on the sender's side (the route and restart checks, the slot, the
//! delivery wrapper, the tell's future, and moving the 100-byte message
//! through them), 36 in the delivery on the actor's side (the handler
//! scope that notes a panic's location, the slot given back), 29 in
//! `memcpy`; and nearly half of the floor's own instructions are glibc's
//! `malloc`/`free` of actix's two allocations a message.
//!
//! The remote pairs run on the same threads of the same processes:
//! the raw endpoints live on the actix System's runtime like the node's, and
//! use the node's 4 MiB UDP socket buffers (quinn's default flow windows:
//! the node's larger ones made raw bulk slower here). Throughput pairs run
//! alternately, a few rounds each, and report medians; every result is
//! checked (counts, sums), so a lost message fails the run instead of
//! flattering it.

use std::error::Error;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use actix::{Actor as _, Handler};
use parallel::{Actor, ActorRef, JoinLine, Message, Node, Password, Received, Tensor};
use parallel_examples::bulk::{
    BULK_BYTES, BULK_MIB, bulk_expected, bulk_values, sum_f32, sum_f32_le,
};
use parallel_examples::placement::one_cpu_then_apart;
use parallel_examples::raw::{self, BoxError, RawAddr};
use parallel_examples::report::{self, Goal, Names, Row, Widths, median};
use rkyv::{Archive, Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod local;

use local::{
    ROLE_LOCAL_ACTIX, ROLE_LOCAL_BOUNDED, ROLE_LOCAL_GUARDED, ROLE_LOCAL_OURS, local_rate,
    local_side,
};

/// Where the server process finds the password (read there through
/// `Password::resolve`, the framework's one reader of it).
const PASSWORD_ENV: &str = parallel::transport::PASSWORD_ENV;

const PING_WARMUP: usize = 2_000;
const PING_N: usize = 20_000;
/// Blocks of asks alternating with blocks of raw pings.
const BLOCKS: usize = 10;
const TELL_WARMUP: u64 = 50_000;
const TELL_N: u64 = 1_000_000;
const PAYLOAD: usize = 100;
const COALESCE: usize = 64 << 10;
const BULK_WARMUP: usize = 1;
const BULK_REPS: usize = 5;
/// Rounds of each throughput pair, run alternately; the median counts.
const ROUNDS: usize = 3;
const LOCAL_N: u64 = 1_000_000;

const MODE_PING: u8 = b'P';
const MODE_FRAMES: u8 = b'T';
const MODE_BULK: u8 = b'B';
const MODE_ACTOR: u8 = b'A';
/// Bulk bytes copied into one buffer (kept from the last stream, so its
/// pages are touched already) and summed after the last one.
const MODE_WHOLE: u8 = b'W';
/// Bytes of the framework's frame header on a tell that follows another to
/// the same actor: the floor's frames carry as many before each payload
/// (their 4-byte length prefix, and the rest as padding).
const FRAME_HEADER: usize = parallel::wire::SHORT_LEN;
/// The floor's receiver lets at most this many messages queue in its
/// actor's mailbox before it waits for them to be handled.
const FLOOR_QUEUE: u64 = 256;

// ---------------------------------------------------------------- messages

#[derive(Message, Archive, Serialize, Deserialize)]
#[message(result = ())]
struct Ping;

#[derive(Message, Archive, Serialize, Deserialize)]
#[message(result = ())]
struct Bytes100 {
    data: [u8; PAYLOAD],
}

#[derive(Message, Archive, Serialize, Deserialize)]
#[message(result = u64)]
struct Count;

#[derive(Message, Archive, Serialize, Deserialize)]
#[message(result = f64)]
struct SumTensor(Tensor<f32>);

/// The actor the benchmarks talk to: counts what it is told, sums tensors.
#[derive(Actor, Archive, Serialize, Deserialize, Default)]
#[actor(messages(Ping, Bytes100, Count), view(SumTensor), spawn)]
struct Sink {
    received: u64,
    checksum: u64,
}

impl Handler<Ping> for Sink {
    type Result = ();
    fn handle(&mut self, _: Ping, _: &mut actix::Context<Self>) {}
}

impl Handler<Bytes100> for Sink {
    type Result = ();
    fn handle(&mut self, msg: Bytes100, _: &mut actix::Context<Self>) {
        self.received += 1;
        self.checksum += u64::from(msg.data[0]);
    }
}

impl Handler<Count> for Sink {
    type Result = u64;
    fn handle(&mut self, _: Count, _: &mut actix::Context<Self>) -> u64 {
        self.received
    }
}

impl Handler<SumTensor> for Sink {
    type Result = f64;
    fn handle(&mut self, msg: SumTensor, _: &mut actix::Context<Self>) -> f64 {
        sum_f32(msg.0.as_slice())
    }
}

impl Handler<Received<SumTensor>> for Sink {
    type Result = f64;
    fn handle(&mut self, msg: Received<SumTensor>, _: &mut actix::Context<Self>) -> f64 {
        sum_f32(msg.0.as_slice())
    }
}

/// The same actor in plain actix, for the local baseline.
#[derive(Default)]
struct PlainSink {
    received: u64,
    checksum: u64,
}

impl actix::Actor for PlainSink {
    type Context = actix::Context<Self>;
}

impl Handler<Bytes100> for PlainSink {
    type Result = ();
    fn handle(&mut self, msg: Bytes100, _: &mut actix::Context<Self>) {
        self.received += 1;
        self.checksum += u64::from(msg.data[0]);
    }
}

impl Handler<Count> for PlainSink {
    type Result = u64;
    fn handle(&mut self, _: Count, _: &mut actix::Context<Self>) -> u64 {
        self.received
    }
}

// ---------------------------------------------------------------- main

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    match parallel_examples::role().as_deref() {
        Some(ROLE_SERVER) => return serve().await.map_err(|e| e as Box<dyn Error>),
        Some(
            role @ (ROLE_LOCAL_OURS | ROLE_LOCAL_ACTIX | ROLE_LOCAL_BOUNDED | ROLE_LOCAL_GUARDED),
        ) => {
            return local_side(role).await.map_err(|e| e as Box<dyn Error>);
        }
        _ => {}
    }
    let json = std::env::args().any(|a| a == "--json");
    run_parent(json).await.map_err(|e| e as Box<dyn Error>)
}

async fn run_parent(json: bool) -> Result<(), BoxError> {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let header = format!(
        "bench_remote: nproc {nproc}, two processes on loopback; machines here are noisy: \
         compare the ratios to the same-run baselines, not the absolute numbers"
    );
    report::header(json, &header);

    let password = parallel_examples::one_time_password();
    let mut server = Server::start(&password).await?;
    let result = run_benches(&password, &server).await;
    raw::stop(&mut server.child).await;
    let rows = result?;
    report::print(&rows, json, WIDTHS);
    Ok(())
}

async fn run_benches(password: &str, server: &Server) -> Result<Vec<Row>, BoxError> {
    let node = Node::builder()
        .password(Password::new(password.to_owned()))
        .start()
        .await?;
    let remote = node.join(&server.join_line).await?;
    let sink: ActorRef<Sink> = remote.spawn(Sink::default()).await?;
    let raw = server.raw.connect().await?;

    let mut rows = Vec::new();

    eprintln!(
        "[bench] ask round trip ({PING_N} sequential, after {PING_WARMUP} warm-up, in {BLOCKS} blocks alternating with raw pings), the processes on one CPU, then on two"
    );
    let (one_cpu, apart) = one_cpu_then_apart(async || ask_and_ping(&sink, &raw).await).await?;
    let unplaced = || Latency {
        p50: f64::NAN,
        p99: f64::NAN,
    };
    let (ask, raw_ping) = apart.unwrap_or_else(|| (unplaced(), unplaced()));
    rows.push(Row::new(ASK_P50, Goal::AtMost(1.25), ask.p50, raw_ping.p50));
    rows.push(Row::new(ASK_P99, Goal::AtMost(1.25), ask.p99, raw_ping.p99));
    let (ask, raw_ping) = one_cpu;
    rows.push(Row::new(
        ASK_P50_ONE_CPU,
        Goal::AtMost(1.25),
        ask.p50,
        raw_ping.p50,
    ));
    rows.push(Row::new(
        ASK_P99_ONE_CPU,
        Goal::AtMost(1.25),
        ask.p99,
        raw_ping.p99,
    ));

    eprintln!("[bench] tell: {TELL_N} x {PAYLOAD} bytes, {ROUNDS} rounds alternating, median");
    raw_frames(&raw, TELL_WARMUP).await?;
    tell(&sink, TELL_WARMUP).await?;
    raw_actor_frames(&raw, TELL_WARMUP).await?;
    let (mut raw_rates, mut tells, mut floors) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        raw_rates.push(raw_frames(&raw, TELL_N).await?);
        floors.push(raw_actor_frames(&raw, TELL_N).await?);
        tells.push(tell(&sink, TELL_N).await?);
    }
    let row = Row::new(TELL, Goal::AtLeast(0.5), median(tells), median(raw_rates));
    let floor = median(floors);
    eprintln!(
        "[bench]   floor: the same raw stream carrying frames of the framework's size ({FRAME_HEADER}-byte header, \
         {PAYLOAD}-byte message), each checked (rkyv::access), deserialized and handed to a plain actix actor: \
         {floor:.0} msg/s = {:.2} of raw quinn frames; remote tell = {:.2} of that floor",
        floor / row.baseline_value,
        row.value / floor
    );
    rows.push(row);

    eprintln!("[bench] bulk: {BULK_MIB} MiB, {BULK_REPS} rounds alternating, median");
    let tensor = Tensor::from_vec(bulk_values());
    let bytes: Vec<u8> = tensor
        .as_slice()
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let (mut raw_rates, mut bulks, mut ceilings) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..BULK_WARMUP + BULK_REPS {
        let r = raw_bulk(&raw, &bytes, MODE_BULK).await?;
        let c = raw_bulk(&raw, &bytes, MODE_WHOLE).await?;
        let b = bulk(&sink, &tensor).await?;
        if round >= BULK_WARMUP {
            raw_rates.push(r);
            ceilings.push(c);
            bulks.push(b);
        }
    }
    let row = Row::new(BULK, Goal::AtLeast(0.8), median(bulks), median(raw_rates));
    let ceiling = median(ceilings);
    eprintln!(
        "[bench]   ceiling: the same raw stream, its bytes copied into one buffer (pages touched before) and summed \
         after the last one, as a message must be whole before its handler sees it: {ceiling:.3} GB/s = {:.2} of \
         raw quinn bulk; remote 64 MiB tensor = {:.2} of that ceiling",
        ceiling / row.baseline_value,
        row.value / ceiling
    );
    rows.push(row);

    eprintln!("[bench] local tell: {LOCAL_N} messages, {ROUNDS} rounds alternating, median");
    let (mut actix_rates, mut bounded, mut guarded, mut locals) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        actix_rates.push(local_rate(ROLE_LOCAL_ACTIX).await?);
        bounded.push(local_rate(ROLE_LOCAL_BOUNDED).await?);
        guarded.push(local_rate(ROLE_LOCAL_GUARDED).await?);
        locals.push(local_rate(ROLE_LOCAL_OURS).await?);
    }
    let row = Row::new(
        LOCAL,
        Goal::AtLeast(0.8),
        median(locals),
        median(actix_rates),
    );
    let bounded = median(bounded);
    eprintln!(
        "[bench]   with backpressure: the same actix actor with a mailbox bounded as the framework's ({} messages), \
         its sender waiting while it is full (`try_send`, then `send().await`): {bounded:.0} msg/s = {:.2} of \
         actix do_send; local tell = {:.2} of that",
        parallel::actor::DEFAULT_MAILBOX,
        bounded / row.baseline_value,
        row.value / bounded
    );
    let guarded = median(guarded);
    eprintln!(
        "[bench]   floor: the same actix actor, each message carrying by hand what the framework's tell \
         guarantees (a place in a mailbox bounded for every sender, taken and given back, and the handler \
         run under `catch_unwind`): {guarded:.0} msg/s = {:.2} of actix do_send; local tell = {:.2} of that floor",
        guarded / row.baseline_value,
        row.value / guarded
    );
    rows.push(row);

    raw.close(0u32.into(), b"done");
    node.shutdown().await;
    Ok(rows)
}

// ---------------------------------------------------------------- report

const ASK_P50: Names = [
    "ask_rtt_p50_us",
    "remote ask p50",
    "us",
    "raw quinn ping p50",
];
const ASK_P99: Names = [
    "ask_rtt_p99_us",
    "remote ask p99",
    "us",
    "raw quinn ping p99",
];
const ASK_P50_ONE_CPU: Names = [
    "ask_rtt_p50_us_one_cpu",
    "the same, on one CPU",
    "us",
    "raw quinn ping p50",
];
const ASK_P99_ONE_CPU: Names = [
    "ask_rtt_p99_us_one_cpu",
    "the same, on one CPU",
    "us",
    "raw quinn ping p99",
];
const TELL: Names = [
    "tell_msgs_per_s",
    "remote tell",
    "msg/s",
    "raw quinn frames",
];
const BULK: Names = [
    "bulk_64mib_gbps",
    "remote 64 MiB tensor",
    "GB/s",
    "raw quinn bulk",
];
const LOCAL: Names = [
    "local_tell_msgs_per_s",
    "local tell",
    "msg/s",
    "actix do_send",
];

/// The table's column widths.
const WIDTHS: Widths = Widths {
    label: 22,
    figure: 12,
    unit: 6,
    ratio: 5,
};

struct Latency {
    p50: f64,
    p99: f64,
}

/// p50 and p99 of round-trip times in microseconds.
fn latency(mut us: Vec<f64>) -> Latency {
    us.sort_by(f64::total_cmp);
    let at = |p: usize| us[(us.len() * p / 100).min(us.len() - 1)];
    Latency {
        p50: at(50),
        p99: at(99),
    }
}

// ---------------------------------------------------------------- framework benches

/// Sequential no-op asks and raw pings, in [`BLOCKS`] alternating blocks
/// of `PING_N / BLOCKS` each (after warm-ups): their latencies.
async fn ask_and_ping(
    sink: &ActorRef<Sink>,
    raw: &quinn::Connection,
) -> Result<(Latency, Latency), BoxError> {
    let (mut send, mut recv) = raw.open_bi().await?;
    send.write_all(&[MODE_PING]).await?;
    raw::pings(&mut send, &mut recv, PING_WARMUP).await?;
    for _ in 0..PING_WARMUP {
        sink.ask(Ping).await?;
    }
    let (asks, pings) = raw::alternate_us(
        PING_N,
        BLOCKS,
        &mut async |_| sink.ask(Ping).await,
        async |k| {
            let ns = raw::pings(&mut send, &mut recv, k).await?;
            Ok(ns.into_iter().map(|v| v as f64 / 1e3).collect())
        },
    )
    .await?;
    send.finish()?;
    Ok((latency(asks), latency(pings)))
}

/// Tells `n` 100-byte messages, then asks for the count; returns msg/s.
async fn tell(sink: &ActorRef<Sink>, n: u64) -> Result<f64, BoxError> {
    let before = sink.ask(Count).await?;
    let start = Instant::now();
    for i in 0..n {
        let msg = Bytes100 {
            data: [i as u8; PAYLOAD],
        };
        sink.tell(msg).await.map_err(|e| e.to_string())?;
    }
    let after = sink.ask(Count).await?;
    let secs = start.elapsed().as_secs_f64();
    if after - before != n {
        return Err(format!(
            "the sink counted {} messages, {n} were told",
            after - before
        )
        .into());
    }
    Ok(n as f64 / secs)
}

/// One ask carrying the tensor (cloned before the clock starts); returns GB/s.
async fn bulk(sink: &ActorRef<Sink>, tensor: &Tensor<f32>) -> Result<f64, BoxError> {
    let msg = SumTensor(tensor.clone());
    let start = Instant::now();
    let sum = sink.ask(msg).await?;
    let secs = start.elapsed().as_secs_f64();
    if sum != bulk_expected() {
        return Err(format!("the sink summed {sum}, expected {}", bulk_expected()).into());
    }
    Ok(BULK_BYTES as f64 / secs / 1e9)
}

/// The role of the second process: a node and the raw server.
const ROLE_SERVER: &str = "server";
// ---------------------------------------------------------------- raw quinn baselines

/// Sends `n` length-prefixed 100-byte frames in 64 KiB writes on one stream;
/// the server counts them and answers with the count. Returns frames/s.
async fn raw_frames(conn: &quinn::Connection, n: u64) -> Result<f64, BoxError> {
    frames_to(conn, n, MODE_FRAMES, 0).await
}

/// The floor under the remote tell: `n` frames of the framework's size (a
/// [`FRAME_HEADER`]-byte header, then the 100-byte message) on a raw
/// stream, each checked with `rkyv::access`, deserialized and handed to a
/// plain actix actor by the server; msg/s until the actor counted them all.
async fn raw_actor_frames(conn: &quinn::Connection, n: u64) -> Result<f64, BoxError> {
    frames_to(conn, n, MODE_ACTOR, FRAME_HEADER - 4).await
}

/// `n` length-prefixed frames of `pad` bytes and a [`PAYLOAD`]-byte
/// payload, in [`COALESCE`]-byte writes, to a server stream of `mode`;
/// msg/s until the server answered their count.
async fn frames_to(
    conn: &quinn::Connection,
    n: u64,
    mode: u8,
    pad: usize,
) -> Result<f64, BoxError> {
    let start = Instant::now();
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut buf = Vec::with_capacity(COALESCE);
    buf.push(mode);
    buf.extend_from_slice(&n.to_le_bytes());
    let len = pad + PAYLOAD;
    for i in 0..n {
        buf.extend_from_slice(&(len as u32).to_le_bytes());
        buf.resize(buf.len() + pad, 0);
        buf.extend_from_slice(&[i as u8; PAYLOAD]);
        if buf.len() + 4 + len > COALESCE {
            send.write_all(&buf).await?;
            buf.clear();
        }
    }
    send.write_all(&buf).await?;
    send.finish()?;
    let mut count = [0u8; 8];
    recv.read_exact(&mut count).await?;
    let secs = start.elapsed().as_secs_f64();
    let count = u64::from_le_bytes(count);
    if count != n {
        return Err(format!("the raw server counted {count} frames, {n} were sent").into());
    }
    Ok(n as f64 / secs)
}

/// The tensor's bytes on one raw stream, summed by the server as they
/// arrive; returns GB/s.
async fn raw_bulk(conn: &quinn::Connection, bytes: &[u8], mode: u8) -> Result<f64, BoxError> {
    let start = Instant::now();
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut head = vec![mode];
    head.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    send.write_all(&head).await?;
    send.write_all(bytes).await?;
    send.finish()?;
    let mut sum = [0u8; 8];
    recv.read_exact(&mut sum).await?;
    let secs = start.elapsed().as_secs_f64();
    let sum = f64::from_le_bytes(sum);
    if sum != bulk_expected() {
        return Err(format!("the raw server summed {sum}, expected {}", bulk_expected()).into());
    }
    Ok(bytes.len() as f64 / secs / 1e9)
}

/// Serves every raw connection: one task per stream, by its first byte;
/// the floor's frames go to `sink`.
async fn raw_serve(endpoint: quinn::Endpoint, sink: actix::Addr<PlainSink>) {
    // The buffer of `MODE_WHOLE`, kept between its streams.
    let whole = Arc::new(std::sync::Mutex::new(Vec::new()));
    while let Some(incoming) = endpoint.accept().await {
        let (sink, whole) = (sink.clone(), whole.clone());
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((send, recv)) = conn.accept_bi().await {
                let (sink, whole) = (sink.clone(), whole.clone());
                tokio::spawn(async move {
                    if let Err(e) = raw_stream(send, recv, sink, &whole).await {
                        eprintln!("[server] raw stream failed: {e}");
                    }
                });
            }
        });
    }
}

/// The whole length-prefixed frame at `at` in `pending`, if it is all
/// there, and where the next one starts.
fn next_frame(pending: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = pending.get(at..at + 4)?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let frame = pending.get(at + 4..at + 4 + len)?;
    Some((frame, at + 4 + len))
}

/// A little-endian `u64` from the stream.
async fn read_u64(recv: &mut quinn::RecvStream) -> Result<u64, BoxError> {
    let mut n = [0u8; 8];
    recv.read_exact(&mut n).await?;
    Ok(u64::from_le_bytes(n))
}

/// Drops the first `consumed` bytes of `pending` and appends the stream's
/// next chunk.
async fn refill(
    recv: &mut quinn::RecvStream,
    pending: &mut Vec<u8>,
    consumed: usize,
) -> Result<(), BoxError> {
    pending.drain(..consumed);
    let chunk = recv
        .read_chunk(usize::MAX, true)
        .await?
        .ok_or("frame stream ended early")?;
    pending.extend_from_slice(&chunk.bytes);
    Ok(())
}

async fn raw_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    sink: actix::Addr<PlainSink>,
    whole: &std::sync::Mutex<Vec<u8>>,
) -> Result<(), BoxError> {
    let mut mode = [0u8; 1];
    recv.read_exact(&mut mode).await?;
    match mode[0] {
        MODE_PING => return raw::echo(send, recv).await,
        MODE_FRAMES => {
            let n = read_u64(&mut recv).await?;
            let (mut count, mut checksum) = (0u64, 0u64);
            let (mut pending, mut at) = (Vec::with_capacity(2 * COALESCE), 0);
            while count < n {
                refill(&mut recv, &mut pending, at).await?;
                at = 0;
                while let Some((frame, next)) = next_frame(&pending, at) {
                    checksum += u64::from(frame.first().copied().unwrap_or(0));
                    count += 1;
                    at = next;
                }
            }
            std::hint::black_box(checksum);
            send.write_all(&count.to_le_bytes()).await?;
            send.finish()?;
        }
        MODE_ACTOR => {
            let n = read_u64(&mut recv).await?;
            let before = sink.send(Count).await?;
            let mut count = 0u64;
            let (mut pending, mut at) = (Vec::with_capacity(2 * COALESCE), 0);
            while count < n {
                refill(&mut recv, &mut pending, at).await?;
                at = 0;
                while let Some((frame, next)) = next_frame(&pending, at) {
                    let payload = frame
                        .get(FRAME_HEADER - 4..)
                        .ok_or("a frame without a payload")?;
                    let archived = rkyv::access::<ArchivedBytes100, rkyv::rancor::Error>(payload)?;
                    let msg: Bytes100 = rkyv::deserialize::<_, rkyv::rancor::Error>(archived)?;
                    sink.do_send(msg);
                    count += 1;
                    if count.is_multiple_of(FLOOR_QUEUE) {
                        sink.send(Count).await?;
                    }
                    at = next;
                }
            }
            let counted = sink.send(Count).await? - before;
            send.write_all(&counted.to_le_bytes()).await?;
            send.finish()?;
        }
        MODE_BULK => {
            let mut left = read_u64(&mut recv).await? as usize;
            let (mut sum, mut carry) = (0f64, Vec::with_capacity(4));
            while left > 0 {
                let chunk = recv
                    .read_chunk(left, true)
                    .await?
                    .ok_or("bulk stream ended early")?;
                left -= chunk.bytes.len();
                let mut bytes = &chunk.bytes[..];
                if !carry.is_empty() {
                    let take = (4 - carry.len()).min(bytes.len());
                    carry.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if carry.len() == 4 {
                        sum += sum_f32_le(&carry);
                        carry.clear();
                    }
                }
                let whole = bytes.len() / 4 * 4;
                sum += sum_f32_le(&bytes[..whole]);
                carry.extend_from_slice(&bytes[whole..]);
            }
            send.write_all(&sum.to_le_bytes()).await?;
            send.finish()?;
        }
        MODE_WHOLE => {
            let len = read_u64(&mut recv).await? as usize;
            let mut buffer = std::mem::take(&mut *whole.lock().map_err(|_| "a stream panicked")?);
            buffer.resize(len, 0);
            let mut at = 0;
            while at < len {
                let chunk = recv
                    .read_chunk(len - at, true)
                    .await?
                    .ok_or("bulk stream ended early")?;
                buffer[at..at + chunk.bytes.len()].copy_from_slice(&chunk.bytes);
                at += chunk.bytes.len();
            }
            let sum = sum_f32_le(&buffer);
            *whole.lock().map_err(|_| "a stream panicked")? = buffer;
            send.write_all(&sum.to_le_bytes()).await?;
            send.finish()?;
        }
        other => return Err(format!("unknown raw mode {other}").into()),
    }
    Ok(())
}

// ---------------------------------------------------------------- the second process

/// The second process: a node that allows `Sink`, and the raw server.
async fn serve() -> Result<(), BoxError> {
    let node = Node::builder()
        .password(Password::resolve()?)
        .allow::<Sink>()
        .start()
        .await?;
    let endpoint = raw::start_server()?;
    println!("READY {}", node.join_line());
    tokio::spawn(raw_serve(endpoint.clone(), PlainSink::default().start()));
    let accepting = node.clone();
    actix::spawn(async move {
        if let Some(peer) = accepting.accept().await {
            eprintln!("[server] node {} joined", peer.id());
        }
    });
    // Serve until the first process closes our standard input (or dies).
    raw::until_stdin_closes().await;
    endpoint.close(0u32.into(), b"bye");
    node.shutdown().await;
    Ok(())
}

/// The second process as the first sees it; killed when dropped.
struct Server {
    child: Child,
    join_line: JoinLine,
    raw: RawAddr,
}

impl Server {
    async fn start(password: &str) -> Result<Server, BoxError> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(parallel_examples::ROLE_ENV, ROLE_SERVER)
            .env(PASSWORD_ENV, password)
            // A password file would come first: this run's password is the one.
            .env_remove(parallel::transport::PASSWORD_FILE_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or("no stdout from the server process")?;
        let mut lines = BufReader::new(stdout).lines();
        let read = async {
            let (mut raw, mut ready) = (None, None);
            while raw.is_none() || ready.is_none() {
                let line = lines
                    .next_line()
                    .await?
                    .ok_or("the server process exited before it was ready")?;
                if let Some(parsed) = RawAddr::parse(&line) {
                    raw = Some(parsed?);
                } else if let Some(rest) = line.strip_prefix("READY ") {
                    ready = Some(rest.parse::<JoinLine>()?);
                } else {
                    return Err(format!("unexpected line from the server process: {line}").into());
                }
            }
            Ok::<_, BoxError>((raw, ready))
        };
        let (raw, ready) = tokio::time::timeout(raw::TIMEOUT, read)
            .await
            .map_err(|_| "the server process did not print RAW and READY within 10 s")??;
        let (raw, join_line) = (raw.ok_or("no RAW line")?, ready.ok_or("no READY line")?);
        Ok(Server {
            child,
            join_line,
            raw,
        })
    }
}
