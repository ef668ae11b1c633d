//! The fixed CPU kernel `calibrate()` runs in every process to compare speeds.

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

/// Speeds in ]0, 1] from the kernel's times: the fastest time gives 1, a
/// time twice as long 0.5. A time that is zero, negative or not a number
/// counts as the fastest.
pub(crate) fn relative_speeds(seconds: &[f64]) -> Vec<f64> {
    let valid = |s: f64| s.is_finite() && s > 0.0;
    let fastest = seconds
        .iter()
        .copied()
        .filter(|&s| valid(s))
        .fold(f64::INFINITY, f64::min);
    seconds
        .iter()
        .map(|&s| {
            if valid(s) {
                (fastest / s).clamp(f64::MIN_POSITIVE, 1.0)
            } else {
                1.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fastest_gets_one_and_twice_as_slow_gets_a_half() {
        assert_eq!(relative_speeds(&[0.2, 0.1, 0.4]), [0.5, 1.0, 0.25]);
        assert_eq!(relative_speeds(&[0.0, f64::NAN, 0.3]), [1.0, 1.0, 1.0]);
        assert!(relative_speeds(&[]).is_empty());
    }

    #[test]
    fn the_kernel_takes_measurable_time() {
        let secs = kernel_seconds();
        assert!(secs > 0.0 && secs < 60.0, "{secs}");
    }
}
