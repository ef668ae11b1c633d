//! GPU support (feature `cuda`): device discovery through the CUDA driver,
//! loaded at run time, so this builds and runs on machines without CUDA and
//! reports a clean error there.
//!
//! Device-pinned actors, device tensors and CUDA IPC build on this module.

use std::ffi::c_int;

/// Why the GPU could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// No CUDA driver library (`libcuda.so`) was found on this machine.
    #[error(
        "no CUDA driver found (libcuda.so); install the NVIDIA driver, or run GPU work on a machine that has one"
    )]
    NoDriver,
    /// The driver is present but refused the call.
    #[error("the CUDA driver failed: {0}; check `nvidia-smi` and CUDA_VISIBLE_DEVICES")]
    Driver(String),
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
    cudarc::driver::result::init().map_err(|e| GpuError::Driver(e.to_string()))?;
    let n: c_int =
        cudarc::driver::result::device::get_count().map_err(|e| GpuError::Driver(e.to_string()))?;
    Ok(n.max(0) as usize)
}

/// The name of device `ordinal` (for example "NVIDIA H100 80GB HBM3").
pub fn device_name(ordinal: usize) -> Result<String, GpuError> {
    if ordinal >= device_count()? {
        return Err(GpuError::Driver(format!("no device {ordinal}")));
    }
    let dev = cudarc::driver::result::device::get(ordinal as c_int)
        .map_err(|e| GpuError::Driver(e.to_string()))?;
    cudarc::driver::result::device::get_name(dev).map_err(|e| GpuError::Driver(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_driver_the_error_is_clean() {
        match device_count() {
            Ok(n) => assert!(driver_present(), "{n} devices without a driver?"),
            Err(e) => {
                assert!(!driver_present() || matches!(e, GpuError::Driver(_)));
                assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    #[ignore = "needs a CUDA device"]
    fn a_device_is_found_and_named() {
        let n = device_count().expect("a CUDA driver");
        assert!(n >= 1);
        let name = device_name(0).expect("device 0 has a name");
        assert!(!name.is_empty());
        println!("{n} device(s); device 0: {name}");
    }
}
