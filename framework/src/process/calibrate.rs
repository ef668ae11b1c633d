//! The fixed CPU kernel a child runs on `Calibrate`, to compare the speeds
//! of processes and hosts.

use std::time::Instant;

/// Runs a fixed amount of floating-point and integer work (about 50 ms on a
/// current core) and returns the seconds it took.
pub fn kernel_seconds() -> f64 {
    let start = Instant::now();
    let mut x = 1.000_000_1_f64;
    let mut acc = 0u64;
    for i in 0..20_000_000u64 {
        x = x * 1.000_000_01 + 1e-9;
        acc = acc.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i);
    }
    std::hint::black_box((x, acc));
    start.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kernel_takes_measurable_time() {
        let secs = super::kernel_seconds();
        assert!(secs > 0.0 && secs < 60.0, "{secs}");
    }
}
