//! Actors pinned to a device. A node that hosts GPU actors has a
//! [`DeviceHost`]: it lists the devices this process may use and runs, for
//! each, one thread whose device context stays that device's for the
//! thread's whole life. An actor type declared `#[actor(gpu)]` only ever runs
//! on such a thread. This layer knows no CUDA: `gpu::CudaDevices` (feature
//! `cuda`) is the host backed by the driver, and a test can bring its own
//! inventory.

use std::fmt::Write as _;
use std::sync::Arc;

/// Which device an actor asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceChoice {
    /// This GPU (its ordinal among the devices the process sees).
    Gpu(u32),
    /// The GPU that runs the fewest pinned actors now (the lowest ordinal
    /// among equals).
    AnyGpu,
}

/// One device a [`DeviceHost`] offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Its ordinal among the devices this process sees.
    pub ordinal: u32,
    /// Its name, as the driver gives it.
    pub name: String,
    /// Its memory, in bytes.
    pub total_bytes: u64,
}

/// What pins actors to devices in one process. A node gets one through
/// `Node::builder().devices(..)`; without one it hosts no GPU actor.
pub trait DeviceHost: Send + Sync + 'static {
    /// The devices actors may be pinned to.
    fn devices(&self) -> Vec<DeviceInfo>;
    /// The arbiter whose thread is bound to device `ordinal` (started on
    /// first use): every actor pinned to that device runs there.
    fn arbiter(&self, ordinal: u32) -> Result<actix::ArbiterHandle, String>;
}

/// The device host of the GPU support compiled into this binary: the
/// `cuda` feature registers one, so every node of such a binary (a forked
/// child's too) can host GPU actors without being told.
pub struct DeviceSupport(pub fn() -> Arc<dyn DeviceHost>);

inventory::collect!(DeviceSupport);

/// A new device host from the GPU support compiled in, if any (what a node
/// uses unless its builder was given one).
pub fn built_in_devices() -> Option<Arc<dyn DeviceHost>> {
    inventory::iter::<DeviceSupport>
        .into_iter()
        .next()
        .map(|support| (support.0)())
}

/// Why an actor could not be pinned to a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlaceError {
    /// The node has no device at all.
    #[error(
        "{actor} runs on a GPU, but node {node} has {have}; start it on a node with a GPU \
         (give a node its devices with Node::builder().devices(parallel::gpu::CudaDevices::detect()?))"
    )]
    NoDevice {
        /// The actor type.
        actor: &'static str,
        /// The node asked.
        node: String,
        /// What the node has.
        have: String,
    },
    /// The node has devices, but not the one asked for.
    #[error(
        "{actor} asked for GPU {asked}, but node {node} has {have}; ask for one of those, or for DeviceChoice::AnyGpu"
    )]
    NoSuchDevice {
        /// The actor type.
        actor: &'static str,
        /// The ordinal asked for.
        asked: u32,
        /// The node asked.
        node: String,
        /// What the node has.
        have: String,
    },
    /// The device is there but its thread could not be started.
    #[error("GPU {ordinal} of node {node} could not host {actor}: {reason}")]
    Device {
        /// The actor type.
        actor: &'static str,
        /// The device.
        ordinal: u32,
        /// The node asked.
        node: String,
        /// What the device host said.
        reason: String,
    },
}

/// What a node has, in words: "no GPU", or "2 GPUs: 0 (NVIDIA H100, 80 GiB), 1 (..)".
pub fn describe(devices: &[DeviceInfo]) -> String {
    if devices.is_empty() {
        return "no GPU".into();
    }
    let mut s = format!(
        "{} GPU{}:",
        devices.len(),
        if devices.len() == 1 { "" } else { "s" }
    );
    for (i, d) in devices.iter().enumerate() {
        let gib = d.total_bytes as f64 / (1u64 << 30) as f64;
        let _ = write!(
            s,
            "{} {} ({}, {gib:.0} GiB)",
            if i == 0 { "" } else { "," },
            d.ordinal,
            d.name
        );
    }
    s
}

/// The device an actor of type `actor` gets on `node`: the one asked for,
/// or the least loaded (`load` counts the actors pinned to an ordinal now).
pub fn choose(
    devices: &[DeviceInfo],
    load: impl Fn(u32) -> usize,
    choice: DeviceChoice,
    actor: &'static str,
    node: &str,
) -> Result<u32, PlaceError> {
    if devices.is_empty() {
        return Err(PlaceError::NoDevice {
            actor,
            node: node.into(),
            have: describe(devices),
        });
    }
    match choice {
        DeviceChoice::Gpu(asked) if devices.iter().any(|d| d.ordinal == asked) => Ok(asked),
        DeviceChoice::Gpu(asked) => Err(PlaceError::NoSuchDevice {
            actor,
            asked,
            node: node.into(),
            have: describe(devices),
        }),
        DeviceChoice::AnyGpu => Ok(devices
            .iter()
            .map(|d| (load(d.ordinal), d.ordinal))
            .min()
            .map(|(_, ordinal)| ordinal)
            .unwrap_or(devices[0].ordinal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpus(n: u32) -> Vec<DeviceInfo> {
        (0..n)
            .map(|ordinal| DeviceInfo {
                ordinal,
                name: "Test GPU".into(),
                total_bytes: 80 << 30,
            })
            .collect()
    }

    #[test]
    fn a_node_without_devices_says_so() {
        let e = choose(&[], |_| 0, DeviceChoice::AnyGpu, "demo::Net", "n1").unwrap_err();
        assert!(matches!(e, PlaceError::NoDevice { .. }));
        let text = e.to_string();
        assert!(text.contains("demo::Net runs on a GPU"), "{text}");
        assert!(text.contains("has no GPU"), "{text}");
    }

    #[test]
    fn a_missing_ordinal_names_what_the_node_has() {
        let e = choose(&gpus(2), |_| 0, DeviceChoice::Gpu(5), "demo::Net", "n1").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("asked for GPU 5")
                && text.contains("2 GPUs: 0 (Test GPU, 80 GiB), 1 (Test GPU, 80 GiB)"),
            "{text}"
        );
    }

    #[test]
    fn any_gpu_takes_the_least_loaded_then_the_lowest() {
        let devices = gpus(3);
        let load = |o: u32| [2, 1, 1][o as usize];
        assert_eq!(
            choose(&devices, load, DeviceChoice::AnyGpu, "a", "n"),
            Ok(1)
        );
        assert_eq!(
            choose(&devices, |_| 0, DeviceChoice::AnyGpu, "a", "n"),
            Ok(0)
        );
        assert_eq!(
            choose(&devices, load, DeviceChoice::Gpu(0), "a", "n"),
            Ok(0)
        );
    }
}
