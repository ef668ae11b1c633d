//! The GPUs of a node agent: which one each worker slot gets, and what they
//! hold now, read from the NVIDIA driver's `nvidia-smi` (so the agent needs
//! no CUDA build to report them).

use rkyv::{Archive, Deserialize, Serialize};

/// The GPU (as the machine names it, e.g. "0" or a UUID) worker slot
/// `slot` gets: the slots go round the GPUs this agent may use — those of
/// its own `CUDA_VISIBLE_DEVICES` (`visible`) when set, else `0..gpus`.
pub fn worker_device(visible: Option<&str>, gpus: u32, slot: u32) -> Option<String> {
    if gpus == 0 {
        return None;
    }
    match visible.map(str::trim).filter(|v| !v.is_empty()) {
        Some(list) => {
            let ids: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let n = ids.len().min(gpus as usize).max(1);
            ids.get(slot as usize % n).map(|s| (*s).to_owned())
        }
        None => Some((slot % gpus).to_string()),
    }
}

/// One GPU of a node, as `parallel status` shows it.
#[derive(Archive, Serialize, Deserialize, serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct GpuRow {
    /// The host it is in.
    pub host: String,
    /// Its id on that machine (`nvidia-smi`'s index).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Memory in use now, MiB.
    pub used_mib: u64,
    /// Its memory, MiB.
    pub total_mib: u64,
    /// The worker slots given this GPU (each pool runs a worker per slot).
    pub slots: Vec<u32>,
}

/// Reads `nvidia-smi --query-gpu=index,name,memory.used,memory.total
/// --format=csv,noheader,nounits` output: (index, name, used MiB, total MiB)
/// per line; lines that do not parse are skipped.
pub fn parse_smi(text: &str) -> Vec<(String, String, u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [index, name, used, total] = fields.as_slice() else {
                return None;
            };
            Some((
                (*index).to_owned(),
                (*name).to_owned(),
                used.parse().ok()?,
                total.parse().ok()?,
            ))
        })
        .collect()
}

/// This machine's GPUs now, with the slots that use each (`slots` worker
/// slots, `gpus` GPUs seen). Empty where `nvidia-smi` is missing or fails.
pub fn usage(visible: Option<&str>, gpus: u32, slots: u32) -> Vec<GpuRow> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,name,memory.used,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .output();
    let text = match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => return Vec::new(),
    };
    rows(&parse_smi(&text), visible, gpus, slots)
}

/// The rows of the GPUs this agent may use, each with its slots.
pub fn rows(
    smi: &[(String, String, u64, u64)],
    visible: Option<&str>,
    gpus: u32,
    slots: u32,
) -> Vec<GpuRow> {
    let host = crate::id::host_name();
    let given: Vec<Option<String>> = (0..slots)
        .map(|s| worker_device(visible, gpus, s))
        .collect();
    smi.iter()
        .filter(|(index, ..)| given.iter().flatten().any(|g| g == index))
        .map(|(index, name, used, total)| GpuRow {
            host: host.clone(),
            id: index.clone(),
            name: name.clone(),
            used_mib: *used,
            total_mib: *total,
            slots: (0..slots)
                .filter(|&s| given[s as usize].as_deref() == Some(index.as_str()))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_go_round_the_visible_gpus() {
        assert_eq!(worker_device(None, 0, 3), None);
        assert_eq!(worker_device(None, 2, 3).as_deref(), Some("1"));
        assert_eq!(worker_device(Some("2,3"), 2, 0).as_deref(), Some("2"));
        assert_eq!(worker_device(Some("2,3"), 2, 3).as_deref(), Some("3"));
        assert_eq!(worker_device(Some(" 5 "), 1, 4).as_deref(), Some("5"));
        assert_eq!(worker_device(Some(""), 2, 1).as_deref(), Some("1"));
    }

    #[test]
    fn smi_lines_become_rows_with_their_slots() {
        let text =
            "0, NVIDIA H100 80GB HBM3, 1234, 81559\n1, NVIDIA H100 80GB HBM3, 5, 81559\nbad line\n";
        let smi = parse_smi(text);
        assert_eq!(smi.len(), 2);
        assert_eq!(
            smi[0],
            ("0".into(), "NVIDIA H100 80GB HBM3".into(), 1234, 81559)
        );
        let rows = rows(&smi, Some("1"), 1, 2);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id, "1");
        assert_eq!(rows[0].slots, vec![0, 1]);
        let rows = super::rows(&smi, None, 2, 3);
        assert_eq!(rows[0].slots, vec![0, 2]);
        assert_eq!(rows[1].slots, vec![1]);
        assert_eq!(rows[1].used_mib, 5);
    }
}
