//! Collectives on [`DeviceTensor`]s: `all_reduce`, `broadcast` and
//! `all_gather` over the ranks of a CPU collective group (a parent's
//! [`Communicator`], or a child's current group), which carries the control
//! messages and is what fails every rank's call when one rank dies.
//!
//! When every rank is on one machine the data never leaves the GPUs: each
//! rank exchanges the CUDA IPC handle of its tensor, then rank `r` folds
//! chunk `r` of every rank's tensor into its own with a reduction kernel
//! (reduce-scatter), and every rank copies the folded chunks from their
//! owners (all-gather), device to device. Across machines each rank stages
//! its tensor through host memory and the group's own hierarchical
//! collective (reduce on each machine, the machines' leaders over QUIC,
//! broadcast back). [`GpuPath`] says which ran.

use std::future::Future;
use std::mem::MaybeUninit;
use std::task::Poll;

use cudarc::driver::result;
use cudarc::driver::sys::{self, CUdeviceptr, CUevent};

use crate::actor::Element;
use crate::collective::Communicator;
use crate::process::ProcessError;
use crate::reduce::{ReduceOp, Reducible};

use super::device::{Device, GpuError};
use super::ipc::open_shared;
use super::kernels::GpuOp;
use super::tensor::{DeviceElement, DeviceTensor};

/// Which way a GPU collective moved the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuPath {
    /// Device to device through CUDA IPC, folds by kernels on the GPUs.
    Ipc,
    /// Through host memory and the group's CPU collective (across machines).
    HostStaged,
}

/// Why a GPU collective failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuCollectiveError {
    /// The GPU refused a step.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// The group failed: a rank died, left, or called something else. Every
    /// rank's call fails with it.
    #[error(transparent)]
    Group(#[from] ProcessError),
    /// The ranks' tensors differ in length.
    #[error(
        "the ranks' device tensors differ in length ({0:?} elements by rank); every rank must pass a tensor of the same length"
    )]
    Lengths(Vec<u64>),
}

/// What a GPU collective needs of its CPU group.
trait Group {
    fn rank(&self) -> usize;
    fn all_gather_host<T: Element>(
        &self,
        data: &[T],
    ) -> impl Future<Output = Result<Vec<T>, ProcessError>>;
    fn broadcast_host<T: Element>(
        &self,
        data: &mut [T],
        root: usize,
    ) -> impl Future<Output = Result<(), ProcessError>>;
    fn barrier(&self) -> impl Future<Output = Result<(), ProcessError>>;
    fn all_reduce_host<T: Reducible>(
        &self,
        data: &mut [T],
        op: ReduceOp<T>,
    ) -> impl Future<Output = Result<(), ProcessError>>;
}

struct Parent<'a>(&'a Communicator);

impl Group for Parent<'_> {
    fn rank(&self) -> usize {
        self.0.rank()
    }
    async fn all_gather_host<T: Element>(&self, data: &[T]) -> Result<Vec<T>, ProcessError> {
        self.0.all_gather(data).await
    }
    async fn broadcast_host<T: Element>(
        &self,
        data: &mut [T],
        root: usize,
    ) -> Result<(), ProcessError> {
        self.0.broadcast(data, root).await
    }
    async fn barrier(&self) -> Result<(), ProcessError> {
        self.0.barrier().await
    }
    async fn all_reduce_host<T: Reducible>(
        &self,
        data: &mut [T],
        op: ReduceOp<T>,
    ) -> Result<(), ProcessError> {
        self.0.all_reduce(data, op).await
    }
}

/// A child's current group; its calls block (a child's collectives do).
struct InChild(usize);

impl Group for InChild {
    fn rank(&self) -> usize {
        self.0
    }
    async fn all_gather_host<T: Element>(&self, data: &[T]) -> Result<Vec<T>, ProcessError> {
        crate::collective::all_gather(data)
    }
    async fn broadcast_host<T: Element>(
        &self,
        data: &mut [T],
        root: usize,
    ) -> Result<(), ProcessError> {
        crate::collective::broadcast(data, root)
    }
    async fn barrier(&self) -> Result<(), ProcessError> {
        crate::collective::barrier()
    }
    async fn all_reduce_host<T: Reducible>(
        &self,
        data: &mut [T],
        op: ReduceOp<T>,
    ) -> Result<(), ProcessError> {
        crate::collective::all_reduce(data, op)
    }
}

/// One rank's record in the exchange: memory handle, event handle, host, length.
const RECORD: usize = 64 + 64 + 8 + 8;

/// This rank's side of an exchange: its tensor's IPC handles and the event
/// marking the end of the writes queued before the call.
struct Offer {
    record: [u8; RECORD],
    event: CUevent,
}

impl Drop for Offer {
    fn drop(&mut self) {
        // SAFETY: created in `offer`, destroyed once.
        unsafe {
            let _ = sys::cuEventDestroy_v2(self.event).result();
        }
    }
}

fn host_hash() -> u64 {
    // FNV-1a of the host name: equal on the ranks of one machine.
    crate::id::host_name()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
}

fn offer<T>(tensor: &DeviceTensor<T>) -> Result<Offer, GpuError> {
    let device = tensor.device();
    device.context().bind_to_thread()?;
    let mut mem = MaybeUninit::<sys::CUipcMemHandle>::uninit();
    let mut event = MaybeUninit::<CUevent>::uninit();
    let mut event_handle = MaybeUninit::<sys::CUipcEventHandle>::uninit();
    // SAFETY: out-parameters are read only after the call that writes them
    // succeeded; the event is destroyed by `Offer`'s drop (or here on error).
    unsafe {
        sys::cuIpcGetMemHandle(mem.as_mut_ptr(), tensor.device_ptr()).result()?;
        let flags = sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32
            | sys::CUevent_flags::CU_EVENT_INTERPROCESS as u32;
        sys::cuEventCreate(event.as_mut_ptr(), flags).result()?;
        let offer = Offer {
            record: [0; RECORD],
            event: event.assume_init(),
        };
        result::event::record(offer.event, device.stream().cu_stream())?;
        sys::cuIpcGetEventHandle(event_handle.as_mut_ptr(), offer.event).result()?;
        let mut offer = offer;
        let mem = mem.assume_init().reserved.map(|b| b as u8);
        let ev = event_handle.assume_init().reserved.map(|b| b as u8);
        offer.record[..64].copy_from_slice(&mem);
        offer.record[64..128].copy_from_slice(&ev);
        offer.record[128..136].copy_from_slice(&host_hash().to_le_bytes());
        offer.record[136..].copy_from_slice(&(tensor.len() as u64).to_le_bytes());
        Ok(offer)
    }
}

/// Every rank's record, as gathered.
struct Records(Vec<u8>);

impl Records {
    fn parse(bytes: Vec<u8>) -> Result<Self, GpuError> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
            return Err(GpuError::Mismatch(format!(
                "the group exchanged {} bytes, not whole {RECORD}-byte records; every rank must call the same GPU collective",
                bytes.len()
            )));
        }
        Ok(Self(bytes))
    }
    fn ranks(&self) -> usize {
        self.0.len() / RECORD
    }
    fn get(&self, rank: usize) -> &[u8] {
        &self.0[rank * RECORD..(rank + 1) * RECORD]
    }
    fn word(record: &[u8], at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&record[at..at + 8]);
        u64::from_le_bytes(b)
    }
    fn one_host(&self) -> bool {
        let first = Self::word(self.get(0), 128);
        (0..self.ranks()).all(|r| Self::word(self.get(r), 128) == first)
    }
    fn lengths(&self) -> Vec<u64> {
        (0..self.ranks())
            .map(|r| Self::word(self.get(r), 136))
            .collect()
    }
}

/// The other ranks' tensors, mapped on this rank's device (closed on drop).
struct Mapped {
    device: Device,
    peers: Vec<Option<CUdeviceptr>>,
}

impl Mapped {
    fn open(device: &Device, records: &Records, me: usize) -> Result<Self, GpuError> {
        device.context().bind_to_thread()?;
        let mut mapped = Mapped {
            device: device.clone(),
            peers: Vec::with_capacity(records.ranks()),
        };
        for rank in 0..records.ranks() {
            let record = records.get(rank);
            if rank == me {
                mapped.peers.push(None);
                continue;
            }
            mapped
                .peers
                .push(Some(open_shared(device, &record[..64], &record[64..128])?));
        }
        Ok(mapped)
    }

    fn peer(&self, rank: usize) -> Option<CUdeviceptr> {
        self.peers.get(rank).copied().flatten()
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.device.context().bind_to_thread().is_ok() {
            for ptr in self.peers.iter().flatten() {
                // SAFETY: opened by `cuIpcOpenMemHandle`, closed once.
                unsafe {
                    let _ = sys::cuIpcCloseMemHandle(*ptr).result();
                }
            }
        }
    }
}

/// Element range `[start, end)` of chunk `k` of `n` elements in `parts` chunks.
pub(crate) fn chunk(n: usize, parts: usize, k: usize) -> (usize, usize) {
    let base = n / parts;
    let extra = n % parts;
    let start = k * base + k.min(extra);
    (start, start + base + usize::from(k < extra))
}

/// Waits, without blocking the thread, until `device`'s stream has run
/// everything queued on it.
async fn drained(device: &Device) -> Result<(), GpuError> {
    device.context().bind_to_thread()?;
    let event = result::event::create(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)?;
    let done = async {
        // SAFETY: `event` is live until destroyed below.
        unsafe { result::event::record(event, device.stream().cu_stream())? };
        loop {
            // SAFETY: as above.
            match unsafe { sys::cuEventQuery(event) } {
                sys::cudaError_enum::CUDA_SUCCESS => return Ok(()),
                sys::cudaError_enum::CUDA_ERROR_NOT_READY => yield_once().await,
                e => return e.result().map_err(GpuError::from),
            }
        }
    }
    .await;
    // SAFETY: created above, destroyed once.
    unsafe {
        let _ = result::event::destroy(event);
    }
    done
}

/// Lets other work of the thread run once.
fn yield_once() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

/// Queues a device-to-device copy of `bytes` on `device`'s stream; both
/// ranges must lie in memory this rank owns or has mapped.
fn copy(device: &Device, dst: CUdeviceptr, src: CUdeviceptr, bytes: usize) -> Result<(), GpuError> {
    // SAFETY: the callers pass ranges inside live allocations or mappings.
    unsafe { result::memcpy_dtod_async(dst, src, bytes, device.stream().cu_stream())? };
    Ok(())
}

/// Ends a step: this rank's queued work is done, then every rank's, so
/// nobody changes or frees a tensor while another rank still reads it;
/// then `held` (mappings, offer) is let go.
async fn settle<G: Group>(
    group: &G,
    device: &Device,
    held: impl Sized,
) -> Result<(), GpuCollectiveError> {
    drained(device).await?;
    group.barrier().await?;
    drop(held);
    Ok(())
}

/// Offers this rank's tensor and gets every rank's offer; the lengths must agree.
async fn exchange<T, G: Group>(
    group: &G,
    tensor: &DeviceTensor<T>,
) -> Result<(Offer, Records), GpuCollectiveError> {
    let offer = offer(tensor)?;
    let records = Records::parse(group.all_gather_host(&offer.record[..]).await?)?;
    let lengths = records.lengths();
    if lengths.iter().any(|&l| l != tensor.len() as u64) {
        return Err(GpuCollectiveError::Lengths(lengths));
    }
    Ok((offer, records))
}

fn element_size<T>() -> usize {
    size_of::<T>()
}

async fn all_reduce_on<T, G>(
    group: &G,
    tensor: &mut DeviceTensor<T>,
    op: GpuOp,
) -> Result<GpuPath, GpuCollectiveError>
where
    T: DeviceElement + Reducible,
    G: Group,
{
    let (offer, records) = exchange(group, tensor).await?;
    if !records.one_host() {
        let mut host = tensor.to_host()?;
        let cpu_op = match op {
            GpuOp::Sum => ReduceOp::Sum,
            GpuOp::Prod => ReduceOp::Prod,
            GpuOp::Min => ReduceOp::Min,
            GpuOp::Max => ReduceOp::Max,
        };
        group.all_reduce_host(&mut host, cpu_op).await?;
        let device = tensor.device().clone();
        tensor.copy_from(&DeviceTensor::from_host(&device, &host)?)?;
        return Ok(GpuPath::HostStaged);
    }
    let me = group.rank();
    let device = tensor.device().clone();
    let mapped = Mapped::open(&device, &records, me)?;
    let size = element_size::<T>();
    let parts = records.ranks();
    let (start, end) = chunk(tensor.len(), parts, me);
    let own = tensor.device_ptr();
    for rank in 0..parts {
        if let Some(peer) = mapped.peer(rank) {
            device.kernels().fold(
                &device,
                op,
                T::DTYPE,
                own + (start * size) as u64,
                peer + (start * size) as u64,
                (end - start) as u64,
            )?;
        }
    }
    // Every chunk is folded before anyone copies one.
    settle(group, &device, ()).await?;
    for rank in 0..parts {
        if let Some(peer) = mapped.peer(rank) {
            let (s, e) = chunk(tensor.len(), parts, rank);
            // Both hold `len` elements; chunk `rank` is final on its owner.
            copy(
                &device,
                own + (s * size) as u64,
                peer + (s * size) as u64,
                (e - s) * size,
            )?;
        }
    }
    settle(group, &device, (mapped, offer)).await?;
    Ok(GpuPath::Ipc)
}

async fn broadcast_on<T, G>(
    group: &G,
    tensor: &mut DeviceTensor<T>,
    root: usize,
) -> Result<GpuPath, GpuCollectiveError>
where
    T: DeviceElement + Reducible,
    G: Group,
{
    let (offer, records) = exchange(group, tensor).await?;
    let me = group.rank();
    if root >= records.ranks() {
        return Err(GpuError::Mismatch(format!(
            "broadcast from rank {root}, but the group has {} ranks",
            records.ranks()
        ))
        .into());
    }
    if !records.one_host() {
        // The root's bits, as the CPU group broadcasts them.
        let mut host = tensor.to_host()?;
        group.broadcast_host(&mut host, root).await?;
        let device = tensor.device().clone();
        tensor.copy_from(&DeviceTensor::from_host(&device, &host)?)?;
        return Ok(GpuPath::HostStaged);
    }
    let device = tensor.device().clone();
    let mapped = Mapped::open(&device, &records, me)?;
    if let Some(src) = mapped.peer(root) {
        copy(&device, tensor.device_ptr(), src, tensor.num_bytes())?;
    }
    settle(group, &device, (mapped, offer)).await?;
    Ok(GpuPath::Ipc)
}

async fn all_gather_on<T, G>(
    group: &G,
    tensor: &DeviceTensor<T>,
) -> Result<(DeviceTensor<T>, GpuPath), GpuCollectiveError>
where
    T: DeviceElement + Reducible,
    G: Group,
{
    let (offer, records) = exchange(group, tensor).await?;
    let (me, parts, len) = (group.rank(), records.ranks(), tensor.len());
    let device = tensor.device().clone();
    if !records.one_host() {
        // Every rank's bits in rank order, as the CPU group gathers them.
        let host = group.all_gather_host(&tensor.to_host()?).await?;
        let out = DeviceTensor::from_host(&device, &host)?;
        return Ok((out, GpuPath::HostStaged));
    }
    let out = DeviceTensor::<T>::zeros(&device, len * parts)?;
    let mapped = Mapped::open(&device, &records, me)?;
    let bytes = tensor.num_bytes();
    for rank in 0..parts {
        let src = mapped.peer(rank).unwrap_or(tensor.device_ptr());
        // `out` holds `parts` slots of `bytes`; each source holds `bytes`.
        copy(
            &device,
            out.device_ptr() + (rank * bytes) as u64,
            src,
            bytes,
        )?;
    }
    settle(group, &device, (mapped, offer)).await?;
    Ok((out, GpuPath::Ipc))
}

/// On the parent: AllReduce of `tensor` with the group's children (each
/// calls [`all_reduce_in_child`] with a tensor of the same length). Every
/// rank ends with the same bits. Says which path ran.
pub async fn all_reduce<T: DeviceElement + Reducible>(
    comm: &Communicator,
    tensor: &mut DeviceTensor<T>,
    op: GpuOp,
) -> Result<GpuPath, GpuCollectiveError> {
    all_reduce_on(&Parent(comm), tensor, op).await
}

/// On the parent: every rank's `tensor` becomes rank `root`'s.
pub async fn broadcast<T: DeviceElement + Reducible>(
    comm: &Communicator,
    tensor: &mut DeviceTensor<T>,
    root: usize,
) -> Result<GpuPath, GpuCollectiveError> {
    broadcast_on(&Parent(comm), tensor, root).await
}

/// On the parent: every rank's tensor, concatenated in rank order, on
/// every rank.
pub async fn all_gather<T: DeviceElement + Reducible>(
    comm: &Communicator,
    tensor: &DeviceTensor<T>,
) -> Result<(DeviceTensor<T>, GpuPath), GpuCollectiveError> {
    all_gather_on(&Parent(comm), tensor).await
}

fn child() -> Result<InChild, GpuCollectiveError> {
    Ok(InChild(crate::collective::rank()?))
}

/// In a child: the parent's [`all_reduce`]. Blocks until done.
pub fn all_reduce_in_child<T: DeviceElement + Reducible>(
    tensor: &mut DeviceTensor<T>,
    op: GpuOp,
) -> Result<GpuPath, GpuCollectiveError> {
    let group = child()?;
    crate::collective::local::block(all_reduce_on(&group, tensor, op))
}

/// In a child: the parent's [`broadcast`]. Blocks until done.
pub fn broadcast_in_child<T: DeviceElement + Reducible>(
    tensor: &mut DeviceTensor<T>,
    root: usize,
) -> Result<GpuPath, GpuCollectiveError> {
    let group = child()?;
    crate::collective::local::block(broadcast_on(&group, tensor, root))
}

/// In a child: the parent's [`all_gather`]. Blocks until done.
pub fn all_gather_in_child<T: DeviceElement + Reducible>(
    tensor: &DeviceTensor<T>,
) -> Result<(DeviceTensor<T>, GpuPath), GpuCollectiveError> {
    let group = child()?;
    crate::collective::local::block(all_gather_on(&group, tensor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_element_once() {
        for n in [0, 1, 5, 16, 1000, 1001] {
            for parts in 1..6 {
                let mut next = 0;
                for k in 0..parts {
                    let (s, e) = chunk(n, parts, k);
                    assert_eq!(s, next);
                    assert!(e >= s && e - s <= n / parts + 1);
                    next = e;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn records_must_be_whole_and_say_where_they_came_from() {
        assert!(Records::parse(vec![0u8; RECORD + 3]).is_err());
        assert!(Records::parse(vec![]).is_err());
        let mut two = vec![0u8; 2 * RECORD];
        two[128..136].copy_from_slice(&7u64.to_le_bytes());
        two[RECORD + 128..RECORD + 136].copy_from_slice(&7u64.to_le_bytes());
        two[136..144].copy_from_slice(&10u64.to_le_bytes());
        two[RECORD + 136..].copy_from_slice(&12u64.to_le_bytes());
        let records = Records::parse(two.clone()).unwrap();
        assert!(records.one_host());
        assert_eq!(records.lengths(), vec![10, 12]);
        two[RECORD + 128] = 8;
        assert!(!Records::parse(two).unwrap().one_host());
    }
}
