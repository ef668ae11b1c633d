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

impl StatusReport {
    /// The report as one JSON object: `join_line`, `nodes` (node, host,
    /// workers, gpus, connected), `pools` (pool, kind, workers, queued,
    /// running, done, unread, queued_bytes, owner_connected) and `gpus`
    /// (host, id, name, used_mib, total_mib, slots).
    pub fn to_json(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "{{\"node\":{},\"host\":{},\"workers\":{},\"gpus\":{},\"connected\":{}}}",
                    string(&n.node.to_string()),
                    string(&n.host),
                    n.workers,
                    n.gpus,
                    n.connected
                )
            })
            .collect();
        let pools: Vec<String> = self
            .pools
            .iter()
            .map(|p| {
                format!(
                    "{{\"pool\":{},\"kind\":{},\"workers\":{},\"queued\":{},\"running\":{},\"done\":{},\"unread\":{},\"queued_bytes\":{},\"owner_connected\":{}}}",
                    string(&p.pool.to_string()),
                    string(&p.kind),
                    p.workers,
                    p.queued,
                    p.running,
                    p.done,
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
        format!(
            "{{\"join_line\":{},\"nodes\":[{}],\"pools\":[{}],\"gpus\":[{}]}}",
            string(&self.join_line),
            nodes.join(","),
            pools.join(","),
            gpus.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::gpus::GpuRow;
    use super::super::message::{NodeRow, PoolRow};
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
            }],
            pools: vec![PoolRow {
                pool,
                kind: "demo::Square".into(),
                workers: 2,
                queued: 5,
                running: 2,
                done: 40,
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
        };
        let json = report.to_json();
        assert!(json.starts_with("{\"join_line\":\"quic://10.0.0.1:7447#sha256=ab\",\"nodes\":[{"));
        assert!(json.contains(&format!(
            "\"node\":\"{node}\",\"host\":\"gpu-1\",\"workers\":2"
        )));
        assert!(json.contains(&format!("\"pool\":\"{pool}\",\"kind\":\"demo::Square\"")));
        assert!(
            json.contains("\"done\":40,\"unread\":1,\"queued_bytes\":640,\"owner_connected\":true")
        );
        assert!(json.contains("\"used_mib\":1024,\"total_mib\":81559,\"slots\":[0,2]}]}"));
        assert_eq!(json.matches('{').count(), json.matches('}').count());
    }
}
