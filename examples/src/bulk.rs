//! The benchmarks' bulk payload: 64 MiB of `f32`s whose sum checks the
//! transfer, and the summing both sides of a bulk pair do.

/// Size of the bulk payload in MiB.
pub const BULK_MIB: usize = 64;
/// Size of the bulk payload in bytes.
pub const BULK_BYTES: usize = BULK_MIB << 20;

/// The payload's values.
pub fn bulk_values() -> Vec<f32> {
    // Small integers: every partial sum is exact, so the total checks the transfer.
    (0..BULK_BYTES / 4).map(|i| (i % 4) as f32).collect()
}

/// What the payload's values add up to.
pub fn bulk_expected() -> f64 {
    (BULK_BYTES / 4 / 4 * (1 + 2 + 3)) as f64
}

/// Sum with eight lanes (vectorizes); the same work on both sides of the bulk pair.
pub fn sum_f32(xs: &[f32]) -> f64 {
    let mut lanes = [0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&x| f64::from(x)).sum();
    lanes.iter().map(|&l| f64::from(l)).sum::<f64>() + tail
}

/// `sum_f32` over little-endian bytes as they come off a raw stream.
pub fn sum_f32_le(bytes: &[u8]) -> f64 {
    let mut lanes = [0f32; 8];
    let mut chunks = bytes.chunks_exact(32);
    for c in &mut chunks {
        for (l, x) in lanes.iter_mut().zip(c.chunks_exact(4)) {
            *l += f32::from_le_bytes([x[0], x[1], x[2], x[3]]);
        }
    }
    let tail: f64 = chunks
        .remainder()
        .chunks_exact(4)
        .map(|x| f64::from(f32::from_le_bytes([x[0], x[1], x[2], x[3]])))
        .sum();
    lanes.iter().map(|&l| f64::from(l)).sum::<f64>() + tail
}
