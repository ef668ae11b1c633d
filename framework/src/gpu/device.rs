//! The GPUs of this process: finding them through the CUDA driver (loaded
//! at run time), [`Device`] — one GPU's context and stream as a pinned
//! actor uses it — and [`CudaDevices`], the node's device host that keeps
//! one thread bound to each GPU.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaStream, DriverError};

use crate::actor::{DeviceHost, DeviceInfo};

/// Why the GPU could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// No CUDA driver library (`libcuda.so`) was found on this machine.
    #[error(
        "no CUDA driver found (libcuda.so); install the NVIDIA driver, or run GPU work on a machine that has one"
    )]
    NoDriver,
    /// The driver is there, but not the device asked for.
    #[error(
        "no GPU {asked}: this process sees {seen} (check `nvidia-smi` and CUDA_VISIBLE_DEVICES)"
    )]
    NoDevice {
        /// The ordinal asked for.
        asked: u32,
        /// How many devices the process sees.
        seen: usize,
    },
    /// Called off a device thread: only an `#[actor(gpu)]` actor (or a
    /// thread that opened a [`Device`] itself) has a current device.
    #[error(
        "this thread is not pinned to a GPU; call it from an #[actor(gpu)] actor started with Node::spawn_on, or open a Device yourself"
    )]
    NotPinned,
    /// Two buffers that must match do not.
    #[error("{0}")]
    Mismatch(String),
    /// The process that owns shared device memory is gone: the memory can
    /// no longer be read.
    #[error(
        "the process that shared this device memory is gone ({0}); ask its supervisor's new incarnation to share it again"
    )]
    OwnerGone(String),
    /// The driver is present but refused the call.
    #[error("the CUDA driver failed: {0}; check `nvidia-smi` and CUDA_VISIBLE_DEVICES")]
    Driver(String),
}

impl From<DriverError> for GpuError {
    fn from(e: DriverError) -> Self {
        GpuError::Driver(e.to_string())
    }
}

/// True when the CUDA driver library can be loaded on this machine.
pub fn driver_present() -> bool {
    // SAFETY: only tries to load the library; it calls nothing in it.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// The number of CUDA devices this process can see (after `CUDA_VISIBLE_DEVICES`).
pub fn device_count() -> Result<usize, GpuError> {
    if !driver_present() {
        return Err(GpuError::NoDriver);
    }
    cudarc::driver::result::init()?;
    let n: c_int = cudarc::driver::result::device::get_count()?;
    Ok(n.max(0) as usize)
}

/// Fails unless device `ordinal` exists (and the driver with it).
fn check(ordinal: u32) -> Result<(), GpuError> {
    let seen = device_count()?;
    if ordinal as usize >= seen {
        return Err(GpuError::NoDevice {
            asked: ordinal,
            seen,
        });
    }
    Ok(())
}

/// The name of device `ordinal` (for example "NVIDIA H100 80GB HBM3").
pub fn device_name(ordinal: u32) -> Result<String, GpuError> {
    check(ordinal)?;
    let dev = cudarc::driver::result::device::get(ordinal as c_int)?;
    Ok(cudarc::driver::result::device::get_name(dev)?)
}

/// Every device this process sees, with its name and memory.
pub fn inventory() -> Result<Vec<DeviceInfo>, GpuError> {
    (0..device_count()? as u32)
        .map(|ordinal| {
            let dev = cudarc::driver::result::device::get(ordinal as c_int)?;
            // SAFETY: `dev` is a device handle the driver just gave.
            let total = unsafe { cudarc::driver::result::device::total_mem(dev)? };
            Ok(DeviceInfo {
                ordinal,
                name: cudarc::driver::result::device::get_name(dev)?,
                total_bytes: total as u64,
            })
        })
        .collect()
}

thread_local! {
    /// The device this thread is bound to, if any.
    static CURRENT: RefCell<Option<Device>> = const { RefCell::new(None) };
}

/// One GPU as an actor pinned to it uses it: the device's primary context
/// (bound on the actor's thread) and a stream of its own. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Device {
    ordinal: u32,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: super::kernels::Kernels,
}

impl Device {
    /// Opens device `ordinal` and binds its context to this thread.
    pub fn open(ordinal: u32) -> Result<Self, GpuError> {
        check(ordinal)?;
        let ctx = CudaContext::new(ordinal as usize)?;
        let stream = ctx.new_stream()?;
        Ok(Self {
            ordinal,
            ctx,
            stream,
            kernels: Default::default(),
        })
    }

    /// The device of this thread: in an `#[actor(gpu)]` actor, the GPU it is
    /// pinned to.
    pub fn current() -> Result<Self, GpuError> {
        CURRENT
            .with(|c| c.borrow().clone())
            .ok_or(GpuError::NotPinned)
    }

    /// Makes this device the current one of the calling thread, for the
    /// thread's life (what a device thread does once, at its start).
    pub fn pin_here(&self) -> Result<(), GpuError> {
        self.ctx.bind_to_thread()?;
        CURRENT.with(|c| *c.borrow_mut() = Some(self.clone()));
        Ok(())
    }

    /// Its ordinal among the devices this process sees.
    pub fn ordinal(&self) -> u32 {
        self.ordinal
    }

    /// Its name.
    pub fn name(&self) -> Result<String, GpuError> {
        Ok(self.ctx.name()?)
    }

    /// Free and total memory, in bytes.
    pub fn memory(&self) -> Result<(usize, usize), GpuError> {
        self.ctx.bind_to_thread()?;
        Ok(self.ctx.mem_get_info()?)
    }

    /// The device's context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream this device's work goes on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The reduction kernels this device has loaded.
    pub(crate) fn kernels(&self) -> &super::kernels::Kernels {
        &self.kernels
    }

    /// Waits until everything queued on the stream is done.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        Ok(self.stream.synchronize()?)
    }
}

/// The node's device host backed by the CUDA driver: one thread per GPU,
/// started on first use, whose context stays that GPU's for its whole life.
/// Give it to a node with `Node::builder().devices(CudaDevices::detect()?)`.
pub struct CudaDevices {
    devices: OnceLock<Vec<DeviceInfo>>,
    threads: Mutex<HashMap<u32, actix::Arbiter>>,
}

inventory::submit! {
    crate::actor::DeviceSupport(CudaDevices::lazy)
}

impl CudaDevices {
    /// Finds the GPUs this process sees. Fails with [`GpuError::NoDriver`]
    /// without a driver; with a driver and no GPU it hosts no device (GPU
    /// actors are then refused, naming that).
    pub fn detect() -> Result<Arc<Self>, GpuError> {
        Ok(Arc::new(Self {
            devices: OnceLock::from(inventory()?),
            threads: Mutex::new(HashMap::new()),
        }))
    }

    /// A host that looks for its GPUs when first asked (what every node of
    /// a `cuda` build gets by default): none where there is no driver.
    pub fn lazy() -> Arc<dyn DeviceHost> {
        Arc::new(Self {
            devices: OnceLock::new(),
            threads: Mutex::new(HashMap::new()),
        })
    }
}

impl DeviceHost for CudaDevices {
    fn devices(&self) -> Vec<DeviceInfo> {
        self.devices
            .get_or_init(|| inventory().unwrap_or_default())
            .clone()
    }

    fn arbiter(&self, ordinal: u32) -> Result<actix::ArbiterHandle, String> {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(arbiter) = threads.get(&ordinal) {
            return Ok(arbiter.handle());
        }
        let device = Device::open(ordinal).map_err(|e| e.to_string())?;
        let arbiter = actix::Arbiter::new();
        // Runs before any actor placed on the thread.
        arbiter.spawn_fn(move || {
            if let Err(e) = device.pin_here() {
                tracing::error!(gpu = ordinal, error = %e, "could not bind the GPU's context to its thread");
            }
        });
        let handle = arbiter.handle();
        threads.insert(ordinal, arbiter);
        Ok(handle)
    }
}

impl Drop for CudaDevices {
    fn drop(&mut self) {
        for arbiter in self
            .threads
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            arbiter.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_driver_every_entry_point_says_so() {
        if driver_present() {
            return;
        }
        assert_eq!(device_count(), Err(GpuError::NoDriver));
        assert_eq!(device_name(0), Err(GpuError::NoDriver));
        assert_eq!(inventory(), Err(GpuError::NoDriver));
        assert_eq!(Device::open(0).unwrap_err(), GpuError::NoDriver);
        assert!(CudaDevices::detect().is_err());
        assert!(
            GpuError::NoDriver
                .to_string()
                .contains("install the NVIDIA driver")
        );
    }

    #[test]
    fn a_thread_that_is_not_pinned_has_no_device() {
        let e = Device::current().unwrap_err();
        assert_eq!(e, GpuError::NotPinned);
        assert!(e.to_string().contains("Node::spawn_on"));
    }

    #[test]
    #[ignore = "needs a CUDA device"]
    fn a_device_is_found_named_and_opened() {
        let n = device_count().expect("a CUDA driver");
        assert!(n >= 1);
        let name = device_name(0).expect("device 0 has a name");
        assert!(!name.is_empty());
        assert!(matches!(
            device_name(n as u32),
            Err(GpuError::NoDevice { .. })
        ));
        let dev = Device::open(0).unwrap();
        dev.pin_here().unwrap();
        assert_eq!(Device::current().unwrap().ordinal(), 0);
        let (free, total) = dev.memory().unwrap();
        assert!(free <= total && total > 0);
        println!("{n} device(s); device 0: {name}, {total} bytes");
    }
}
