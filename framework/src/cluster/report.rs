//! `parallel status --json`: a [`StatusReport`] as one JSON object, for
//! scripts and dashboards.

use super::message::StatusReport;

impl StatusReport {
    /// The report as one JSON object: `join_line`, `nodes` (node, host,
    /// workers, gpus, connected, up, cpu_percent, rss_bytes: the last two
    /// `null` when unknown), `pools` (pool, kind, workers, queued, running,
    /// submitted, done, failed, lost, unread, queued_bytes,
    /// owner_connected), `gpus` (host, id, name, used_mib, total_mib, slots)
    /// and `totals` (submitted, started, done, failed, retries, lost).
    pub fn to_json(&self) -> String {
        // Plain data with string keys: it always serializes (a float that
        // is not finite becomes `null`).
        serde_json::to_string(self)
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::super::gpus::GpuRow;
    use super::super::message::{JobTotals, NodeRow, PoolRow};
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let mut report = StatusReport {
            join_line: "a\"b\\c\nd\u{1}".into(),
            nodes: Vec::new(),
            pools: Vec::new(),
            gpus: Vec::new(),
            totals: JobTotals::default(),
        };
        assert!(
            report
                .to_json()
                .starts_with("{\"join_line\":\"a\\\"b\\\\c\\nd\\u0001\",")
        );
        report.join_line.clear();
        assert!(
            report
                .to_json()
                .contains("\"pools\":[],\"gpus\":[],\"totals\":{\"submitted\":0,")
        );
    }

    #[test]
    fn a_report_is_one_json_object_with_every_row() {
        let node = crate::id::NodeId::new();
        let pool = uuid::Uuid::new_v4();
        let report = StatusReport {
            join_line: "quic://10.0.0.1:7447#sha256=ab".into(),
            nodes: vec![NodeRow {
                node,
                host: "gpu-1".into(),
                workers: 2,
                gpus: 2,
                connected: 2,
                up: true,
                cpu_percent: Some(12.5),
                rss_bytes: None,
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
            gpus: vec![GpuRow {
                host: "gpu-1".into(),
                id: "0".into(),
                name: "NVIDIA H100".into(),
                used_mib: 1024,
                total_mib: 81559,
                slots: vec![0, 2],
            }],
            totals: JobTotals {
                submitted: 47,
                started: 45,
                done: 40,
                failed: 1,
                retries: 2,
                lost: 0,
            },
        };
        let json = report.to_json();
        assert!(json.starts_with("{\"join_line\":\"quic://10.0.0.1:7447#sha256=ab\",\"nodes\":[{"));
        assert!(json.contains(&format!(
            "\"node\":\"{node}\",\"host\":\"gpu-1\",\"workers\":2"
        )));
        assert!(json.contains(&format!("\"pool\":\"{pool}\",\"kind\":\"demo::Square\"")));
        assert!(json.contains(
            "\"done\":40,\"failed\":1,\"lost\":0,\"unread\":1,\"queued_bytes\":640,\"owner_connected\":true"
        ));
        assert!(json.contains("\"up\":true,\"cpu_percent\":12.5,\"rss_bytes\":null}"));
        assert!(json.contains("\"used_mib\":1024,\"total_mib\":81559,\"slots\":[0,2]}]"));
        assert!(json.ends_with(
            ",\"totals\":{\"submitted\":47,\"started\":45,\"done\":40,\"failed\":1,\"retries\":2,\"lost\":0}}"
        ));
        // It is JSON.
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(parsed["nodes"][0]["cpu_percent"], 12.5);
        assert_eq!(json.matches('{').count(), json.matches('}').count());
    }
}
