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
//! - [`all_reduce`], [`broadcast`], [`all_gather`] (and their `_in_child`
//!   forms): collectives on device tensors over a collective group, device
//!   to device on one machine, staged through host memory across machines.

mod collective;
mod device;
mod ipc;
mod kernels;
mod tensor;

pub use collective::{
    GpuCollectiveError, GpuPath, all_gather, all_gather_in_child, all_reduce, all_reduce_in_child,
    broadcast, broadcast_in_child,
};

pub use device::{
    CudaDevices, Device, GpuError, device_count, device_name, driver_present, inventory,
};
pub use ipc::{Exporter, Exports, Holding, IpcTensor, IpcView, Release};
pub use kernels::GpuOp;
pub use tensor::{DeviceElement, DeviceTensor};
