//! `DeviceTensor<T>`: numbers in GPU memory, with their shape. Its memory
//! is allocated so that it can be shared with another process of the same
//! machine through CUDA IPC ([`super::Exporter`]); across machines it
//! travels as a host [`Tensor`] through the transport's bulk path
//! ([`DeviceTensor::to_tensor`], then [`DeviceTensor::from_archived`] on a
//! received view, one copy each way).

use std::marker::PhantomData;
use std::sync::Arc;

use cudarc::driver::result;
use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{CudaContext, DeviceRepr};

use crate::actor::{ArchivedTensor, Element, Tensor};

use super::device::{Device, GpuError};

/// A number type a [`DeviceTensor`] can hold.
pub trait DeviceElement: Element + DeviceRepr + Default + sealed::Sealed {
    /// Its tag in an [`super::IpcTensor`], so a receiver cannot read the
    /// memory as another type.
    const DTYPE: u8;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! device_elements {
    ($($t:ty => $tag:expr),*) => {$(
        impl sealed::Sealed for $t {}
        impl DeviceElement for $t {
            const DTYPE: u8 = $tag;
        }
    )*};
}
device_elements!(f32 => 1, f64 => 2, i32 => 3, i64 => 4, u32 => 5, u64 => 6, u8 => 7);

/// One allocation of device memory, freed when the last holder drops it.
pub(crate) struct Allocation {
    pub(crate) ptr: CUdeviceptr,
    pub(crate) bytes: usize,
    ctx: Arc<CudaContext>,
}

impl Allocation {
    fn new(device: &Device, bytes: usize) -> Result<Arc<Self>, GpuError> {
        device.context().bind_to_thread()?;
        // Plain (not stream-ordered) memory: CUDA IPC can only share that.
        // SAFETY: allocates at least one byte; freed once, in `drop`.
        let ptr = unsafe { result::malloc_sync(bytes.max(1))? };
        Ok(Arc::new(Self {
            ptr,
            bytes,
            ctx: device.context().clone(),
        }))
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: `ptr` came from `malloc_sync` and is freed only here.
            if let Err(e) = unsafe { result::free_sync(self.ptr) } {
                tracing::warn!(error = %e, "could not free device memory");
            }
        }
    }
}

/// `len` elements of `T` at `ptr` on `device`, copied to host memory after
/// the work queued on the device's stream.
///
/// # Safety
/// `ptr` must hold at least `len` elements of `T` (allocated or mapped).
pub(crate) unsafe fn copy_to_host<T: DeviceElement>(
    device: &Device,
    ptr: CUdeviceptr,
    len: usize,
) -> Result<Vec<T>, GpuError> {
    device.synchronize()?;
    device.context().bind_to_thread()?;
    let mut out = vec![T::default(); len];
    if len > 0 {
        // SAFETY: `out` holds `len` elements; the caller vouches for `ptr`.
        unsafe { result::memcpy_dtoh_sync(&mut out, ptr)? };
    }
    Ok(out)
}

/// Numbers of type `T` in the memory of one GPU, with their shape.
pub struct DeviceTensor<T> {
    pub(crate) alloc: Arc<Allocation>,
    shape: Vec<usize>,
    len: usize,
    device: Device,
    _t: PhantomData<T>,
}

impl<T> std::fmt::Debug for DeviceTensor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceTensor")
            .field("gpu", &self.device.ordinal())
            .field("shape", &self.shape)
            .finish()
    }
}

impl<T: DeviceElement> DeviceTensor<T> {
    /// `len` zeros on `device`, as one dimension.
    pub fn zeros(device: &Device, len: usize) -> Result<Self, GpuError> {
        let alloc = Allocation::new(device, len * size_of::<T>())?;
        // SAFETY: the allocation holds `len * size_of::<T>()` bytes.
        unsafe { result::memset_d8_sync(alloc.ptr, 0, alloc.bytes)? };
        Ok(Self::wrap(alloc, vec![len], len, device))
    }

    /// A copy of `data` on `device`, as one dimension.
    pub fn from_host(device: &Device, data: &[T]) -> Result<Self, GpuError> {
        let alloc = Allocation::new(device, std::mem::size_of_val(data))?;
        if !data.is_empty() {
            // SAFETY: the allocation holds exactly `data`'s bytes.
            unsafe { result::memcpy_htod_sync(alloc.ptr, data)? };
        }
        Ok(Self::wrap(alloc, vec![data.len()], data.len(), device))
    }

    /// A copy of `tensor` (its shape kept) on `device`.
    pub fn from_tensor(device: &Device, tensor: &Tensor<T>) -> Result<Self, GpuError> {
        Ok(Self::from_host(device, tensor.as_slice())?.with_shape(tensor.shape()))
    }

    /// A copy of a received tensor on `device`, read in place from the
    /// receive buffer (a `view(..)` message): one copy, to the device.
    pub fn from_archived(device: &Device, tensor: &ArchivedTensor<T>) -> Result<Self, GpuError> {
        Ok(Self::from_host(device, tensor.as_slice())?.with_shape(tensor.shape()))
    }

    /// Its numbers, copied to host memory (after the work queued on its
    /// device's stream).
    pub fn to_host(&self) -> Result<Vec<T>, GpuError> {
        // SAFETY: the allocation holds `len` elements of `T`.
        unsafe { copy_to_host(&self.device, self.alloc.ptr, self.len) }
    }

    /// A host [`Tensor`] of the same shape, to send to another machine.
    pub fn to_tensor(&self) -> Result<Tensor<T>, GpuError> {
        Tensor::new(&self.shape, self.to_host()?).map_err(|e| GpuError::Mismatch(e.to_string()))
    }

    /// Copies `other` into this tensor on the device (same length).
    pub fn copy_from(&mut self, other: &DeviceTensor<T>) -> Result<(), GpuError> {
        if other.len != self.len {
            return Err(GpuError::Mismatch(format!(
                "cannot copy {} elements into a device tensor of {}",
                other.len, self.len
            )));
        }
        other.device.synchronize()?;
        self.device.context().bind_to_thread()?;
        // SAFETY: both allocations hold `len` elements of `T`.
        unsafe { result::memcpy_dtod_sync(self.alloc.ptr, other.alloc.ptr, self.alloc.bytes)? };
        Ok(())
    }

    /// The same memory seen with another shape of as many elements.
    pub fn with_shape(mut self, shape: Vec<usize>) -> Self {
        if shape.iter().product::<usize>() == self.len {
            self.shape = shape;
        }
        self
    }

    fn wrap(alloc: Arc<Allocation>, shape: Vec<usize>, len: usize, device: &Device) -> Self {
        Self {
            alloc,
            shape,
            len,
            device: device.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> DeviceTensor<T> {
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

    /// The device it lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The raw device address, for a kernel launch.
    pub fn device_ptr(&self) -> CUdeviceptr {
        self.alloc.ptr
    }

    /// Its size in bytes.
    pub fn num_bytes(&self) -> usize {
        self.len * size_of::<T>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs a CUDA device"]
    fn host_device_host_is_bit_exact_and_keeps_the_shape() {
        let device = Device::open(0).expect("a GPU");
        device.pin_here().unwrap();
        let data: Vec<f32> = (0..1 << 20).map(|i| i as f32 * 0.5 - 7.25).collect();
        let tensor = Tensor::new(&[1024, 1024], data.clone()).unwrap();
        let on_gpu = DeviceTensor::from_tensor(&device, &tensor).unwrap();
        assert_eq!(on_gpu.shape(), &[1024, 1024]);
        assert_eq!(on_gpu.to_host().unwrap(), data);
        let mut copy = DeviceTensor::<f32>::zeros(&device, data.len()).unwrap();
        assert!(copy.to_host().unwrap().iter().all(|&x| x == 0.0));
        copy.copy_from(&on_gpu).unwrap();
        assert_eq!(copy.to_tensor().unwrap().as_slice(), &data[..]);
        let short = DeviceTensor::<f32>::zeros(&device, 3).unwrap();
        assert!(matches!(copy.copy_from(&short), Err(GpuError::Mismatch(_))));
    }

    #[test]
    #[ignore = "needs a CUDA device"]
    fn dropping_a_tensor_gives_its_memory_back() {
        let device = Device::open(0).expect("a GPU");
        device.pin_here().unwrap();
        let before = device.memory().unwrap().0;
        let big = DeviceTensor::<u8>::zeros(&device, 256 << 20).unwrap();
        assert!(device.memory().unwrap().0 + (200 << 20) < before);
        drop(big);
        assert!(device.memory().unwrap().0 + (16 << 20) >= before);
    }
}
