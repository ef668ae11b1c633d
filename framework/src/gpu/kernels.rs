//! The element-wise reduction kernels GPU collectives run, written as PTX
//! text (so no CUDA compiler is needed: the driver compiles PTX for the GPU
//! it finds) and loaded once per device.

use std::collections::HashMap;
use std::ffi::{CString, c_void};
use std::sync::{Arc, Mutex};

use cudarc::driver::result;
use cudarc::driver::sys::{self, CUdeviceptr};

use super::device::{Device, GpuError};

/// How values combine in a GPU reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GpuOp {
    /// Element-wise sum.
    Sum,
    /// Element-wise product.
    Prod,
    /// Element-wise minimum.
    Min,
    /// Element-wise maximum.
    Max,
}

/// An element type's PTX spelling: (type suffix, byte-shift of its size).
pub(crate) fn ptx_type(dtype: u8) -> Option<(&'static str, u32)> {
    Some(match dtype {
        1 => ("f32", 2),
        2 => ("f64", 3),
        3 => ("s32", 2),
        4 => ("s64", 3),
        5 => ("u32", 2),
        6 => ("u64", 3),
        _ => return None,
    })
}

/// The PTX instruction combining two registers of type `ty`.
fn instruction(op: GpuOp, ty: &str) -> String {
    let float = ty.starts_with('f');
    match op {
        GpuOp::Sum => format!("add.{ty}"),
        GpuOp::Prod if float => format!("mul.{ty}"),
        GpuOp::Prod => format!("mul.lo.{ty}"),
        GpuOp::Min => format!("min.{ty}"),
        GpuOp::Max => format!("max.{ty}"),
    }
}

/// The name of the kernel that folds `src` into `dst` with `op`.
pub(crate) fn kernel_name(op: GpuOp, dtype: u8) -> Option<String> {
    let (ty, _) = ptx_type(dtype)?;
    Some(format!("fold_{}_{ty}", format!("{op:?}").to_lowercase()))
}

/// PTX of `dst[i] = dst[i] op src[i]` for `i < n`, a grid-stride loop.
pub(crate) fn fold_ptx(op: GpuOp, dtype: u8) -> Option<String> {
    let (ty, shift) = ptx_type(dtype)?;
    let name = kernel_name(op, dtype)?;
    let combine = instruction(op, ty);
    Some(format!(
        ".version 7.0
.target sm_52
.address_size 64

.visible .entry {name}(
    .param .u64 dst_param,
    .param .u64 src_param,
    .param .u64 n_param
)
{{
    .reg .pred %p;
    .reg .u32 %r<5>;
    .reg .u64 %rd<10>;
    .reg .{ty} %v<3>;

    ld.param.u64 %rd1, [dst_param];
    ld.param.u64 %rd2, [src_param];
    ld.param.u64 %rd3, [n_param];
    cvta.to.global.u64 %rd1, %rd1;
    cvta.to.global.u64 %rd2, %rd2;
    mov.u32 %r1, %ctaid.x;
    mov.u32 %r2, %ntid.x;
    mov.u32 %r3, %tid.x;
    mov.u32 %r4, %nctaid.x;
    mul.wide.u32 %rd4, %r1, %r2;
    cvt.u64.u32 %rd5, %r3;
    add.u64 %rd4, %rd4, %rd5;
    mul.wide.u32 %rd6, %r4, %r2;
FOLD_LOOP:
    setp.ge.u64 %p, %rd4, %rd3;
    @%p bra FOLD_DONE;
    shl.b64 %rd7, %rd4, {shift};
    add.u64 %rd8, %rd1, %rd7;
    add.u64 %rd9, %rd2, %rd7;
    ld.global.{ty} %v1, [%rd8];
    ld.global.{ty} %v2, [%rd9];
    {combine} %v1, %v1, %v2;
    st.global.{ty} [%rd8], %v1;
    add.u64 %rd4, %rd4, %rd6;
    bra FOLD_LOOP;
FOLD_DONE:
    ret;
}}
"
    ))
}

/// A loaded kernel: the driver's handle, usable from any thread of the
/// process once its context is bound.
#[derive(Clone, Copy)]
struct Function(sys::CUfunction);

// SAFETY: a CUfunction is a driver handle valid in every thread of the
// process (with its context bound); it is never freed while the cache lives.
unsafe impl Send for Function {}

/// The fold kernels one device has loaded, by (op, element type).
#[derive(Clone, Default)]
pub(crate) struct Kernels(Arc<Mutex<HashMap<(GpuOp, u8), Function>>>);

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kernels")
    }
}

impl Kernels {
    fn function(&self, device: &Device, op: GpuOp, dtype: u8) -> Result<Function, GpuError> {
        let mut loaded = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = loaded.get(&(op, dtype)) {
            return Ok(*f);
        }
        let unsupported =
            || GpuError::Mismatch(format!("no GPU reduction for element type tag {dtype}"));
        let ptx = fold_ptx(op, dtype).ok_or_else(unsupported)?;
        let name = kernel_name(op, dtype).ok_or_else(unsupported)?;
        let ptx = CString::new(ptx).map_err(|e| GpuError::Mismatch(e.to_string()))?;
        let name = CString::new(name).map_err(|e| GpuError::Mismatch(e.to_string()))?;
        device.context().bind_to_thread()?;
        // SAFETY: `ptx` is a NUL-terminated PTX image; the module is kept
        // loaded for the process's life (the cache never unloads it).
        let f = unsafe {
            let module = result::module::load_data(ptx.as_ptr().cast())?;
            result::module::get_function(module, name)?
        };
        loaded.insert((op, dtype), Function(f));
        Ok(Function(f))
    }

    /// Queues `dst[i] = dst[i] op src[i]` for `n` elements of type `dtype`
    /// on `device`'s stream.
    pub(crate) fn fold(
        &self,
        device: &Device,
        op: GpuOp,
        dtype: u8,
        dst: CUdeviceptr,
        src: CUdeviceptr,
        n: u64,
    ) -> Result<(), GpuError> {
        if n == 0 {
            return Ok(());
        }
        let f = self.function(device, op, dtype)?;
        const THREADS: u64 = 256;
        let blocks = n.div_ceil(THREADS).min(4096) as u32;
        let (mut dst, mut src, mut n) = (dst, src, n);
        let mut params: [*mut c_void; 3] = [
            (&raw mut dst).cast(),
            (&raw mut src).cast(),
            (&raw mut n).cast(),
        ];
        // SAFETY: the kernel takes (u64, u64, u64) and touches `n` elements
        // of both buffers, which the callers own or have mapped.
        unsafe {
            result::launch_kernel(
                f.0,
                (blocks, 1, 1),
                (THREADS as u32, 1, 1),
                0,
                device.stream().cu_stream(),
                &mut params,
            )?
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_op_and_type_gets_its_instruction_and_stride() {
        let ptx = fold_ptx(GpuOp::Sum, 1).unwrap();
        assert!(ptx.contains(".visible .entry fold_sum_f32("));
        assert!(ptx.contains("add.f32 %v1, %v1, %v2;"));
        assert!(ptx.contains("shl.b64 %rd7, %rd4, 2;"));
        let ptx = fold_ptx(GpuOp::Prod, 4).unwrap();
        assert!(ptx.contains("mul.lo.s64 %v1, %v1, %v2;"));
        assert!(ptx.contains("shl.b64 %rd7, %rd4, 3;"));
        assert!(fold_ptx(GpuOp::Max, 2).unwrap().contains("max.f64"));
        assert!(fold_ptx(GpuOp::Min, 7).is_none(), "u8 has no fold kernel");
        // Balanced braces: one entry, one body.
        let ptx = fold_ptx(GpuOp::Min, 3).unwrap();
        assert_eq!(ptx.matches('{').count(), ptx.matches('}').count());
    }
}
