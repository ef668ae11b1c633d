//! GPU support (feature `cuda`), through cudarc with the CUDA driver loaded
//! at run time: this builds and runs on machines without CUDA, where every
//! entry point returns [`GpuError::NoDriver`].
//!
//! - [`CudaDevices`]: a node's devices (`Node::builder().devices(..)`), one
//!   thread bound to each GPU; `#[actor(gpu)]` actors run there, started
//!   with `Node::spawn_on`, `RemoteNode::spawn_on` or `ChildSpec::pinned`,
//!   and find their GPU with [`Device::current`].
//! - [`DeviceTensor`]: numbers in GPU memory; to and from host memory and
//!   [`Tensor`](crate::Tensor)s.
//! - [`Exports`] / [`IpcTensor`] / [`IpcView`]: device memory shared with
//!   another process of the same machine through CUDA IPC, kept alive until
//!   the reader lets go.

mod device;
mod ipc;
mod tensor;

pub use device::{
    CudaDevices, Device, GpuError, device_count, device_name, driver_present, inventory,
};
pub use ipc::{Exporter, Exports, Holding, IpcTensor, IpcView, Release};
pub use tensor::{DeviceElement, DeviceTensor};
