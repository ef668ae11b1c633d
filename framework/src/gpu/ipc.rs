//! Device memory shared between processes of one machine through CUDA IPC.
//! An [`Exporter`] — an actor pinned to the exporting GPU — takes a
//! [`DeviceTensor`] and gives an [`IpcTensor`]: a small wire value (the
//! memory's IPC handle, an event marking the end of the writes, the element
//! type and shape, and the exporter's reference) that any message can
//! carry. The receiver opens it on its own device thread as an [`IpcView`]:
//! no copy, reads wait for the sender's writes, and the sender's memory
//! stays alive until the view is dropped (the view then tells the exporter,
//! which frees it). A view whose exporter's process died refuses reads with
//! [`GpuError::OwnerGone`] instead of touching freed memory.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix::Handler;
use cudarc::driver::result;
use cudarc::driver::sys::{self, CUdeviceptr, CUevent};
use rkyv::{Archive, Deserialize, Serialize};

use crate::actor::{DeviceChoice, PlaceError};
use crate::id::ActorId;
use crate::remote::{ActorRef, Node};

use super::device::{Device, GpuError};
use super::tensor::{Allocation, DeviceElement, DeviceTensor, copy_to_host};

/// Keeps shared device memory alive for the processes reading it. Start one
/// per GPU with [`Exports::start`].
#[derive(crate::Actor, Default)]
#[actor(messages(Release, Holding), gpu)]
pub struct Exporter {
    held: HashMap<u64, Held>,
    next: u64,
}

struct Held {
    _alloc: Arc<Allocation>,
    event: CUevent,
}

// SAFETY: a CUDA event handle may be used and destroyed from any thread
// (the exporter only destroys it, on its own device thread).
unsafe impl Send for Held {}

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: the event was created by this exporter and is destroyed once.
        unsafe {
            let _ = sys::cuEventDestroy_v2(self.event).result();
        }
    }
}

/// A view was dropped: the exporter may free what it shared.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = ())]
pub struct Release {
    /// Which share.
    pub export: u64,
}

/// How many shares the exporter holds now.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = u64)]
pub struct Holding;

impl Handler<Release> for Exporter {
    type Result = ();
    fn handle(&mut self, msg: Release, _: &mut actix::Context<Self>) {
        self.held.remove(&msg.export);
    }
}

impl Handler<Holding> for Exporter {
    type Result = u64;
    fn handle(&mut self, _: Holding, _: &mut actix::Context<Self>) -> u64 {
        self.held.len() as u64
    }
}

/// Hands a tensor's memory to the exporter (same process only).
struct Hold {
    alloc: Arc<Allocation>,
    stream: Arc<cudarc::driver::CudaStream>,
}

impl actix::Message for Hold {
    type Result = Result<(u64, [u8; 64], [u8; 64]), GpuError>;
}

impl Handler<Hold> for Exporter {
    type Result = Result<(u64, [u8; 64], [u8; 64]), GpuError>;
    fn handle(&mut self, hold: Hold, _: &mut actix::Context<Self>) -> Self::Result {
        let device = Device::current()?;
        device.context().bind_to_thread()?;
        let mut mem = MaybeUninit::<sys::CUipcMemHandle>::uninit();
        let mut event = MaybeUninit::<CUevent>::uninit();
        let mut event_handle = MaybeUninit::<sys::CUipcEventHandle>::uninit();
        // SAFETY: each call writes its out-parameter on success, and only
        // then is it read; the pointer is a live allocation of this device.
        let (mem, event, event_handle) = unsafe {
            sys::cuIpcGetMemHandle(mem.as_mut_ptr(), hold.alloc.ptr).result()?;
            let flags = sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32
                | sys::CUevent_flags::CU_EVENT_INTERPROCESS as u32;
            sys::cuEventCreate(event.as_mut_ptr(), flags).result()?;
            let event = event.assume_init();
            // Marks the end of the writes queued so far on the tensor's stream.
            if let Err(e) = result::event::record(event, hold.stream.cu_stream()) {
                let _ = sys::cuEventDestroy_v2(event).result();
                return Err(e.into());
            }
            if let Err(e) = sys::cuIpcGetEventHandle(event_handle.as_mut_ptr(), event).result() {
                let _ = sys::cuEventDestroy_v2(event).result();
                return Err(e.into());
            }
            (mem.assume_init(), event, event_handle.assume_init())
        };
        self.next += 1;
        self.held.insert(
            self.next,
            Held {
                _alloc: hold.alloc,
                event,
            },
        );
        Ok((
            self.next,
            mem.reserved.map(|b| b as u8),
            event_handle.reserved.map(|b| b as u8),
        ))
    }
}

/// A running [`Exporter`]: shares tensors of its GPU with other processes.
#[derive(Clone)]
pub struct Exports {
    addr: actix::Addr<Exporter>,
    actor: ActorRef<Exporter>,
}

impl Exports {
    /// Starts an exporter on `node`, pinned to the GPU `choice` names.
    pub fn start(node: &Node, choice: DeviceChoice) -> Result<Self, PlaceError> {
        let id = ActorId::new();
        let (addr, entry, _) = node.0.start_pinned(id, Exporter::default(), choice)?;
        let actor = ActorRef::local(id, node.id(), Some(node.join_line()), addr.clone(), entry);
        Ok(Self { addr, actor })
    }

    /// Shares `tensor` (it must live on the exporter's GPU): its memory now
    /// belongs to the exporter until the receiver's view is dropped. Send
    /// the [`IpcTensor`] in any message to a process of this machine.
    pub async fn share<T: DeviceElement>(
        &self,
        tensor: DeviceTensor<T>,
    ) -> Result<IpcTensor, GpuError> {
        let shape = tensor.shape().iter().map(|&d| d as u64).collect();
        let len = tensor.len() as u64;
        let hold = Hold {
            alloc: tensor.alloc.clone(),
            stream: tensor.device().stream().clone(),
        };
        let (export, mem, event) = self
            .addr
            .send(hold)
            .await
            .map_err(|_| GpuError::OwnerGone("the exporter has stopped".into()))??;
        Ok(IpcTensor {
            mem,
            event,
            len,
            shape,
            dtype: T::DTYPE,
            host: crate::id::host_name(),
            export,
            exporter: self.actor.clone(),
        })
    }

    /// How many shares it holds (each until its view is dropped).
    pub async fn holding(&self) -> Result<u64, GpuError> {
        self.actor
            .ask(Holding)
            .await
            .map_err(|e| GpuError::OwnerGone(e.to_string()))
    }

    /// The exporter's reference.
    pub fn actor(&self) -> &ActorRef<Exporter> {
        &self.actor
    }
}

/// Device memory shared by another process of this machine: send it in
/// any message, open it with [`IpcTensor::open`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone)]
pub struct IpcTensor {
    mem: [u8; 64],
    event: [u8; 64],
    len: u64,
    shape: Vec<u64>,
    dtype: u8,
    host: String,
    export: u64,
    exporter: ActorRef<Exporter>,
}

impl IpcTensor {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maps the shared memory on `device` (the receiver's device thread):
    /// no copy. Fails when it was shared on another machine or holds
    /// another element type than `T`.
    pub fn open<T: DeviceElement>(self, device: &Device) -> Result<IpcView<T>, GpuError> {
        if self.dtype != T::DTYPE {
            return Err(GpuError::Mismatch(format!(
                "the shared tensor holds elements of type tag {}, not {}",
                self.dtype,
                std::any::type_name::<T>()
            )));
        }
        if self.host != crate::id::host_name() {
            return Err(GpuError::Mismatch(format!(
                "this tensor was shared on host {}: CUDA IPC works within one machine; send a Tensor (DeviceTensor::to_tensor) to another",
                self.host
            )));
        }
        let ptr = open_shared(device, &self.mem, &self.event)?;
        let alive = Arc::new(AtomicBool::new(true));
        if tokio::runtime::Handle::try_current().is_ok() {
            let (watched, flag) = (self.exporter.clone(), alive.clone());
            actix_rt::spawn(async move {
                let down = watched.watch().await;
                flag.store(false, Ordering::Release);
                tracing::debug!(?down.reason, "the exporter of a shared tensor is gone");
            });
        }
        Ok(IpcView {
            ptr,
            len: self.len as usize,
            shape: self.shape.iter().map(|&d| d as usize).collect(),
            device: device.clone(),
            alive,
            exporter: self.exporter,
            export: self.export,
            _t: PhantomData,
        })
    }
}

/// Maps memory another process of this machine shared (its IPC handle
/// `mem`), and makes `device`'s stream wait for the writes its event
/// (`event`) marks. Close the pointer with `cuIpcCloseMemHandle`.
pub(crate) fn open_shared(
    device: &Device,
    mem: &[u8],
    event: &[u8],
) -> Result<CUdeviceptr, GpuError> {
    device.context().bind_to_thread()?;
    let mem = sys::CUipcMemHandle {
        reserved: std::array::from_fn(|i| mem[i] as std::ffi::c_char),
    };
    let event = sys::CUipcEventHandle {
        reserved: std::array::from_fn(|i| event[i] as std::ffi::c_char),
    };
    let mut ptr = MaybeUninit::<CUdeviceptr>::uninit();
    let mut ev = MaybeUninit::<CUevent>::uninit();
    // SAFETY: the handles came from `cuIpcGet*Handle` in another process;
    // the out-parameters are read only on success; on failure the mapping
    // is closed before returning.
    unsafe {
        sys::cuIpcOpenMemHandle_v2(
            ptr.as_mut_ptr(),
            mem,
            sys::CUipcMem_flags::CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS as u32,
        )
        .result()?;
        let ptr = ptr.assume_init();
        let waited = sys::cuIpcOpenEventHandle(ev.as_mut_ptr(), event)
            .result()
            .and_then(|()| {
                let ev = ev.assume_init();
                let waited = result::stream::wait_event(
                    device.stream().cu_stream(),
                    ev,
                    sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
                );
                let _ = sys::cuEventDestroy_v2(ev).result();
                waited
            });
        if let Err(e) = waited {
            let _ = sys::cuIpcCloseMemHandle(ptr).result();
            return Err(e.into());
        }
        Ok(ptr)
    }
}

/// Another process's device memory, mapped here: read it in place on the
/// device, or copy it out. Dropping it lets the exporter free the memory.
pub struct IpcView<T> {
    ptr: CUdeviceptr,
    len: usize,
    shape: Vec<usize>,
    device: Device,
    alive: Arc<AtomicBool>,
    exporter: ActorRef<Exporter>,
    export: u64,
    _t: PhantomData<T>,
}

impl<T: DeviceElement> IpcView<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// False once the exporting process is known to be gone.
    pub fn owner_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// The raw device address, for a kernel launch on this view's device
    /// stream (check [`IpcView::owner_alive`] first).
    pub fn device_ptr(&self) -> CUdeviceptr {
        self.ptr
    }

    fn check(&self) -> Result<(), GpuError> {
        if self.owner_alive() {
            Ok(())
        } else {
            Err(GpuError::OwnerGone(format!(
                "exporter {} on node {}",
                self.exporter.id(),
                self.exporter.node()
            )))
        }
    }

    /// The numbers, copied to host memory.
    pub fn to_host(&self) -> Result<Vec<T>, GpuError> {
        self.check()?;
        // SAFETY: the mapping holds `len` elements of `T` (type checked at open).
        unsafe { copy_to_host(&self.device, self.ptr, self.len) }
    }

    /// A copy in this process's own device memory (device to device).
    pub fn to_device(&self) -> Result<DeviceTensor<T>, GpuError> {
        self.check()?;
        let mut own = DeviceTensor::<T>::zeros(&self.device, self.len)?;
        self.device.synchronize()?;
        // SAFETY: both hold `len` elements of `T`.
        unsafe { result::memcpy_dtod_sync(own.device_ptr(), self.ptr, self.len * size_of::<T>())? };
        own = own.with_shape(self.shape.clone());
        Ok(own)
    }
}

impl<T> Drop for IpcView<T> {
    fn drop(&mut self) {
        if self.device.context().bind_to_thread().is_ok() {
            // SAFETY: `ptr` was opened by `cuIpcOpenMemHandle` and is closed once.
            unsafe {
                let _ = sys::cuIpcCloseMemHandle(self.ptr).result();
            }
        }
        if self.alive.load(Ordering::Acquire) {
            let _ = self.exporter.try_tell(Release {
                export: self.export,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Password;

    #[actix_rt::test]
    async fn a_node_without_a_gpu_refuses_an_exporter_naming_what_it_has() {
        if super::super::device_count().is_ok_and(|n| n > 0) {
            return;
        }
        let node = Node::builder()
            .password(Password::new("gpu".into()))
            .start()
            .await
            .unwrap();
        // A `cuda` build gives every node the driver's devices: none here.
        assert!(node.devices().is_empty());
        let err = Exports::start(&node, DeviceChoice::AnyGpu).err().unwrap();
        assert!(matches!(err, PlaceError::NoDevice { .. }), "{err}");
        assert!(err.to_string().contains("has no GPU"), "{err}");
        node.shutdown().await;
    }
}
