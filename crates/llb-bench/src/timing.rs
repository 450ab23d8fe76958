//! Medians of timed runs.

use std::time::Instant;

/// The median of `values` (the upper one of an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The median seconds of `reps` (at least one) timed calls of `f` after `warmups` untimed ones,
/// with the last call's output.
///
/// # Errors
/// The first error `f` returns.
pub fn median_secs<T, E>(
    warmups: usize,
    reps: usize,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<(f64, T), E> {
    for _ in 0..warmups {
        f()?;
    }
    let mut times = Vec::with_capacity(reps.max(1));
    let mut out = None;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        out = Some(f()?);
        times.push(start.elapsed().as_secs_f64());
    }
    let out = out.expect("at least one timed call ran");
    Ok((median(&times), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_value_in_any_order() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn median_secs_runs_warmups_and_reps_and_returns_the_last_output() {
        let mut calls = 0;
        let (secs, last) = median_secs::<_, ()>(2, 3, || {
            calls += 1;
            Ok(calls)
        })
        .unwrap();
        assert_eq!((calls, last), (5, 5));
        assert!(secs >= 0.0);
        let mut calls = 0;
        let err = median_secs(1, 3, || {
            calls += 1;
            if calls == 2 { Err("second call") } else { Ok(()) }
        });
        assert_eq!(err.unwrap_err(), "second call");
    }
}
