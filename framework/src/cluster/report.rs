//! `parallel status --json`: a [`StatusReport`] as one JSON object, for
//! scripts and dashboards. Written by hand (the report is small and flat).

use std::fmt::Write as _;

use super::message::StatusReport;

/// `text` as a JSON string literal.
fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `value` as JSON, `null` when absent.
fn or_null<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "null".to_owned(), |v| v.to_string())
}

impl StatusReport {
    /// The report as one JSON object: `join_line`, `nodes` (node, host,
    /// workers, gpus, connected, up, cpu_percent, rss_bytes: the last two
    /// `null` when unknown), `pools` (pool, kind, workers, queued, running,
    /// done, failed, lost, unread, queued_bytes, owner_connected), `gpus`
    /// (host, id, name, used_mib, total_mib, slots) and `totals`
    /// (submitted, done, failed, retries, lost).
    pub fn to_json(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "{{\"node\":{},\"host\":{},\"workers\":{},\"gpus\":{},\"connected\":{},\"up\":{},\"cpu_percent\":{},\"rss_bytes\":{}}}",
                    string(&n.node.to_string()),
                    string(&n.host),
                    n.workers,
                    n.gpus,
                    n.connected,
                    n.up,
                    or_null(n.cpu_percent.filter(|c| c.is_finite())),
                    or_null(n.rss_bytes)
                )
            })
            .collect();
        let pools: Vec<String> = self
            .pools
            .iter()
            .map(|p| {
                format!(
                    "{{\"pool\":{},\"kind\":{},\"workers\":{},\"queued\":{},\"running\":{},\"done\":{},\"failed\":{},\"lost\":{},\"unread\":{},\"queued_bytes\":{},\"owner_connected\":{}}}",
                    string(&p.pool.to_string()),
                    string(&p.kind),
                    p.workers,
                    p.queued,
                    p.running,
                    p.done,
                    p.failed,
                    p.lost,
                    p.unread,
                    p.queued_bytes,
                    p.owner_connected
                )
            })
            .collect();
        let gpus: Vec<String> = self
            .gpus
            .iter()
            .map(|g| {
                let slots: Vec<String> = g.slots.iter().map(u32::to_string).collect();
                format!(
                    "{{\"host\":{},\"id\":{},\"name\":{},\"used_mib\":{},\"total_mib\":{},\"slots\":[{}]}}",
                    string(&g.host),
                    string(&g.id),
                    string(&g.name),
                    g.used_mib,
                    g.total_mib,
                    slots.join(",")
                )
            })
            .collect();
        let t = &self.totals;
        format!(
            "{{\"join_line\":{},\"nodes\":[{}],\"pools\":[{}],\"gpus\":[{}],\"totals\":{{\"submitted\":{},\"done\":{},\"failed\":{},\"retries\":{},\"lost\":{}}}}}",
            string(&self.join_line),
            nodes.join(","),
            pools.join(","),
            gpus.join(","),
            t.submitted,
            t.done,
            t.failed,
            t.retries,
            t.lost
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::gpus::GpuRow;
    use super::super::message::{JobTotals, NodeRow, PoolRow};
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
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
            ",\"totals\":{\"submitted\":47,\"done\":40,\"failed\":1,\"retries\":2,\"lost\":0}}"
        ));
        // It is JSON.
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(parsed["nodes"][0]["cpu_percent"], 12.5);
        assert_eq!(json.matches('{').count(), json.matches('}').count());
    }
}
