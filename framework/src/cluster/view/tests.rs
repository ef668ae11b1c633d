use super::*;
use crate::cluster::message::{JobTotals, PoolRow};
use crate::cluster::usage::ChildRow;
use crate::id::{ActorId, NodeId};

fn view() -> ClusterView {
    let pool = uuid::Uuid::new_v4();
    let worker = ActorId::new();
    let node = NodeId::new();
    ClusterView {
        head: HeadView {
            node: NodeId::new(),
            join_line: "quic://127.0.0.1:7447#sha256=ab".into(),
            uptime_s: 12.5,
            cpu_percent: Some(3.5),
            rss_bytes: Some(50 << 20),
            heartbeat_timeouts: 1,
        },
        nodes: vec![NodeView {
            node,
            host: "gpu \"one\"".into(),
            address: Some("10.0.0.2:4000".into()),
            incarnation: Some(7),
            state: "up".into(),
            cpu_percent: Some(150.0),
            rss_bytes: Some(300 << 20),
            workers_per_pool: 2,
            gpus: vec![GpuRow {
                host: "gpu \"one\"".into(),
                id: "0".into(),
                name: "NVIDIA H100".into(),
                used_mib: 1024,
                total_mib: 81559,
                slots: vec![0],
            }],
            workers: vec![WorkerView {
                worker,
                pool,
                kind: "demo::Square".into(),
                holding: 3,
                completed: 40,
            }],
            supervisors: vec![SupervisorRow {
                pool: pool.to_string(),
                gave_up: false,
                children: vec![
                    ChildRow {
                        name: "worker 0".into(),
                        pid: Some(10),
                        incarnation: 3,
                        state: "running".into(),
                        last_exit: Some("killed".into()),
                    },
                    ChildRow {
                        name: "worker 1".into(),
                        pid: Some(11),
                        incarnation: 1,
                        state: "running".into(),
                        last_exit: None,
                    },
                ],
            }],
            mailboxes: Vec::new(),
            restarts: 2,
        }],
        pools: vec![PoolRow {
            pool,
            kind: "demo::Square".into(),
            workers: 2,
            queued: 5,
            running: 2,
            submitted: 47,
            done: 40,
            failed: 1,
            lost: 0,
            unread: 1,
            queued_bytes: 640,
            owner_connected: true,
        }],
        rates: vec![RatePoint {
            t: 100,
            submitted: 47,
            started: 42,
            done: 40,
            failed: 1,
        }],
        stream: Vec::new(),
        slowest: Vec::new(),
        totals: JobTotals {
            submitted: 47,
            started: 42,
            done: 40,
            failed: 1,
            retries: 2,
            lost: 0,
        },
        peers: vec![PeerView {
            node,
            address: "10.0.0.2:4000".into(),
            frames_sent: 9,
            bytes_sent: 1200,
            bytes_received: 800,
            rtt_ms: 0.25,
            lost_packets: 0,
        }],
        mailboxes: Vec::new(),
    }
}

fn value(samples: &[prometheus_parse::Sample], metric: &str) -> f64 {
    let sample = samples
        .iter()
        .find(|s| s.metric == metric)
        .unwrap_or_else(|| panic!("no {metric}"));
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{metric}: {other:?}"),
    }
}

#[test]
fn metrics_parse_as_prometheus_text_with_the_view_s_figures() {
    let v = view();
    let text = v.to_prometheus();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let s = &scrape.samples;
    assert_eq!(value(s, "parallel_jobs_submitted_total"), 47.0);
    assert_eq!(value(s, "parallel_jobs_done_total"), 40.0);
    assert_eq!(value(s, "parallel_jobs_failed_total"), 1.0);
    assert_eq!(value(s, "parallel_jobs_lost"), 0.0);
    assert_eq!(value(s, "parallel_pool_jobs_done_total"), 40.0);
    assert_eq!(value(s, "parallel_pool_jobs_lost"), 0.0);
    assert_eq!(value(s, "parallel_pool_queue_bytes"), 640.0);
    assert_eq!(value(s, "parallel_job_retries_total"), 2.0);
    assert_eq!(value(s, "parallel_heartbeat_timeouts_total"), 1.0);
    assert_eq!(value(s, "parallel_worker_restarts_total"), 2.0);
    assert_eq!(value(s, "parallel_node_cpu_ratio"), 1.5);
    assert_eq!(
        value(s, "parallel_gpu_memory_used_bytes"),
        1024.0 * 1048576.0
    );
    assert_eq!(value(s, "parallel_peer_rtt_seconds"), 0.00025);
    // Quotes in a label are escaped as the format says (the parser used
    // here does not undo escapes, so the text is checked).
    assert!(text.contains("host=\"gpu \\\"one\\\"\""), "{text}");
    let pool = v.pools[0].pool.to_string();
    let done = s
        .iter()
        .find(|x| x.metric == "parallel_pool_jobs_done_total")
        .unwrap();
    assert_eq!(done.labels.get("pool"), Some(pool.as_str()));
    assert_eq!(done.labels.get("kind"), Some("demo::Square"));
    // Every family has its help and its type.
    for name in [
        "parallel_pool_jobs_done_total",
        "parallel_peer_sent_bytes_total",
    ] {
        assert!(scrape.docs.contains_key(name), "{name} has no help");
    }
    assert!(text.contains("# TYPE parallel_jobs_done_total counter\n"));
    assert!(text.contains("# TYPE parallel_pool_jobs_queued gauge\n"));
}

#[test]
fn the_dashboard_json_has_every_section() {
    let json = serde_json::to_value(view()).expect("serializes");
    for key in [
        "head",
        "nodes",
        "pools",
        "rates",
        "stream",
        "slowest",
        "totals",
        "peers",
        "mailboxes",
    ] {
        assert!(json.get(key).is_some(), "no {key}");
    }
    let node = &json["nodes"][0];
    assert_eq!(node["host"], "gpu \"one\"");
    assert_eq!(node["workers"][0]["kind"], "demo::Square");
    assert_eq!(node["supervisors"][0]["children"][0]["incarnation"], 3);
    assert_eq!(json["totals"]["lost"], 0);
    assert_eq!(json["rates"][0]["done"], 40);
    // Ids are strings, as the page shows them.
    assert!(json["head"]["node"].is_string() && node["workers"][0]["worker"].is_string());
}
