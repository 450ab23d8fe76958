//! [`multiversion!`](crate::multiversion): one kernel compiled for the x86-64 baseline, AVX2 +
//! FMA and AVX-512, picked at run time.
//!
//! The workspace builds for the x86-64 baseline (SSE2), so LLVM's auto-vectorisation of a plain
//! Rust loop uses 128-bit vectors unless the function is compiled for more. A kernel written
//! once as scalar Rust and wrapped in this macro runs with the widest vectors the machine has.
//! The three versions run the same scalar arithmetic as written (LLVM does not contract a
//! multiply and an add into an FMA unless asked), so their results do not depend on the machine.

/// Compiles `fn $name(args) body` (no return value: kernels write into `&mut` arguments) for the
/// baseline and, on x86-64, for AVX2 + FMA and for AVX-512, and dispatches on the features
/// detected at run time (`is_x86_feature_detected!` caches its answer, so a call costs one
/// load and a branch).
#[macro_export]
macro_rules! multiversion {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn generic($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
                fn v4($($arg: $ty),*) {
                    generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn v3($($arg: $ty),*) {
                    generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    #[allow(unsafe_code, reason = "calling a #[target_feature] function")]
                    // SAFETY: every feature `v4` is compiled for was detected on this CPU.
                    unsafe {
                        return v4($($arg),*);
                    }
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    #[allow(unsafe_code, reason = "calling a #[target_feature] function")]
                    // SAFETY: every feature `v3` is compiled for was detected on this CPU.
                    unsafe {
                        return v3($($arg),*);
                    }
                }
            }
            generic($($arg),*)
        }
    };
}

#[cfg(test)]
mod tests {
    crate::multiversion! {
        /// The sum of squares of each row of `x` (rows of `width` values) into `out`.
        fn row_sums_of_squares(x: &[f32], width: usize, out: &mut [f32]) {
            for (row, o) in x.chunks_exact(width).zip(out.iter_mut()) {
                *o = row.iter().map(|v| v * v).sum();
            }
        }
    }

    #[test]
    fn the_version_picked_here_computes_what_the_body_says() {
        let x: Vec<f32> = (0..70).map(|i| i as f32 * 0.5 - 3.0).collect();
        let mut out = [0.0_f32; 2];
        row_sums_of_squares(&x, 35, &mut out);
        let want: Vec<f32> = x.chunks(35).map(|r| r.iter().map(|v| v * v).sum()).collect();
        assert_eq!(out.to_vec(), want);
    }
}
