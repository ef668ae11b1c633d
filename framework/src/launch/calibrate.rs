//! Speeds from the calibration kernel's times (the kernel itself runs in
//! each child: [`crate::process::kernel_seconds`]).

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
}
