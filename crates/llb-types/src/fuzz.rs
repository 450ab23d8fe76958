//! Fuzzing on stable Rust for the workspace's parsers of outside bytes (feature `fuzz`, for
//! tests only): a seeded mutator of real files, a harness that counts panics, and a per-thread
//! peak-memory counter.
//!
//! A parser's test feeds [`run`] a small corpus of valid inputs; it tries a fixed number of
//! mutants (truncations, bit flips, interesting bytes, huge length fields, inserted, deleted and
//! repeated ranges, dictionary tokens, splices of two inputs, one to four at a time), each inside
//! `catch_unwind`, and measures the bytes each parse allocates at its peak. [`Report::assert_clean`]
//! fails the test, showing the first offending input, on any panic or on a peak above the bound
//! the parser promises (a function of the input length).
//!
//! Peak memory is counted by [`PeakAlloc`], which the test binary installs as its global
//! allocator: it forwards to the system allocator and keeps, per thread, the bytes live and their
//! peak, so tests running in parallel on other threads do not disturb the figure (a parser that
//! allocates on other threads is not fully counted; the parsers fuzzed here do not).
#![allow(
    unsafe_code,
    reason = "a global allocator is an unsafe trait; each block says why it holds"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::AssertUnwindSafe;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn note(delta: i64) {
    // `try_with`: allocations during thread teardown are simply not counted.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

/// The system allocator, counting live and peak bytes per thread (see the module docs).
#[derive(Debug, Default)]
pub struct PeakAlloc;

// SAFETY: every method forwards to `System` with the same arguments and returns its result
// unchanged; the bookkeeping only touches const-initialised thread-locals without destructors,
// which never allocate.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which `System.alloc` shares.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

/// Runs `f` and returns its result with the most bytes it had allocated (and not yet freed) at
/// any moment on this thread, above what was live when it started.
pub fn measure_peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, usize::try_from(peak - start).unwrap_or(0))
}

/// `true` when [`PeakAlloc`] is this binary's global allocator (otherwise peaks read 0).
pub fn peak_alloc_installed() -> bool {
    let (_, peak) = measure_peak(|| std::hint::black_box(vec![0u8; 4096]));
    peak >= 4096
}

/// A seeded SplitMix64 generator: the same seed gives the same mutants on every machine.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes that break parsers: zero, all ones, sign bits, separators of text formats.
const INTERESTING: [u8; 12] = [0, 0xff, 0x7f, 0x80, 1, b'\n', b',', b'"', b'{', b'(', b'-', b'9'];

/// Little-endian "huge length" fields of 2, 4 and 8 bytes.
const HUGE: [&[u8]; 7] = [
    &[0xff, 0xff],
    &[0xff, 0xff, 0xff, 0xff],
    &[0xff, 0xff, 0xff, 0x7f],
    &[0x00, 0x00, 0x00, 0x80],
    &[0xff; 8],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
    &[0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00],
];

/// One mutation of `input` (`corpus` for splices, `tokens` for dictionary insertions).
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], tokens: &[&[u8]]) {
    let len = input.len();
    let at = |rng: &mut Rng| rng.below(len.max(1));
    match rng.below(10) {
        0 => input.truncate(at(rng)),
        1 if len > 0 => {
            for _ in 0..1 + rng.below(8) {
                let i = at(rng);
                input[i] ^= 1 << rng.below(8);
            }
        }
        2 if len > 0 => {
            let i = at(rng);
            input[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        3 if len > 0 => {
            let field = HUGE[rng.below(HUGE.len())];
            let i = at(rng);
            for (k, &b) in field.iter().enumerate() {
                if let Some(slot) = input.get_mut(i + k) {
                    *slot = b;
                }
            }
        }
        4 => {
            let i = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            input.splice(i..i, bytes);
        }
        5 if len > 0 => {
            let i = at(rng);
            let end = (i + 1 + rng.below(len.min(64))).min(len);
            input.drain(i..end);
        }
        6 if len > 0 => {
            let i = at(rng);
            let end = (i + 1 + rng.below(len.min(64))).min(len);
            let chunk = input[i..end].to_vec();
            let to = rng.below(len + 1);
            input.splice(to..to, chunk);
        }
        7 if !tokens.is_empty() => {
            let token = tokens[rng.below(tokens.len())];
            let i = rng.below(len + 1);
            if rng.below(2) == 0 || i == len {
                input.splice(i..i, token.iter().copied());
            } else {
                let end = (i + token.len()).min(len);
                input.splice(i..end, token.iter().copied());
            }
        }
        8 if !corpus.is_empty() => {
            let other = &corpus[rng.below(corpus.len())];
            let cut = rng.below(other.len() + 1);
            input.truncate(at(rng));
            input.extend_from_slice(&other[cut..]);
        }
        _ => {
            let i = at(rng);
            if let Some(b) = input.get_mut(i) {
                *b = rng.next() as u8;
            }
        }
    }
}

/// `n` mutants of `corpus` (each 1–4 mutations of one corpus input), deterministic in `seed`.
///
/// # Panics
/// If `corpus` is empty.
pub fn mutants(corpus: &[Vec<u8>], tokens: &[&[u8]], n: usize, seed: u64) -> Vec<Vec<u8>> {
    assert!(!corpus.is_empty(), "fuzzing needs at least one valid input");
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let mut input = corpus[rng.below(corpus.len())].clone();
            for _ in 0..1 + rng.below(4) {
                mutate(&mut rng, &mut input, corpus, tokens);
            }
            input
        })
        .collect()
}

/// What [`run`] saw.
#[derive(Debug)]
pub struct Report {
    /// The parser's name, for messages.
    pub parser: String,
    /// Mutated inputs tried.
    pub n_inputs: usize,
    /// Inputs the parser accepted (`Ok`).
    pub n_accepted: usize,
    /// Inputs the parser refused with an error.
    pub n_rejected: usize,
    /// Inputs on which the parser panicked: `(index, message)`.
    pub panics: Vec<(usize, String)>,
    /// The largest peak allocation of one parse, in bytes.
    pub max_peak_bytes: usize,
    /// The largest ratio of a parse's peak to the bound for its input length (at most 1 when
    /// the parser keeps its promise).
    pub max_peak_over_bound: f64,
    /// Inputs whose peak exceeded the parser's bound: `(index, input length, peak)`.
    pub over_bound: Vec<(usize, usize, usize)>,
    inputs: Vec<Vec<u8>>,
}

impl Report {
    /// Fails (panics, in a test) on any panic or peak above the bound, showing the first
    /// offending input; otherwise prints the summary to stderr.
    ///
    /// # Panics
    /// When the parser panicked or went over its memory bound.
    #[allow(clippy::print_stderr, reason = "the fuzz summary is the test's report")]
    pub fn assert_clean(&self) {
        let show = |i: usize| {
            let input = &self.inputs[i];
            let head: String = input.iter().take(256).map(|b| format!("{b:02x}")).collect();
            format!("input {i} ({} bytes, hex head {head})", input.len())
        };
        if let Some((i, message)) = self.panics.first() {
            panic!(
                "{}: {} panic(s); first on {}: {message}",
                self.parser,
                self.panics.len(),
                show(*i)
            );
        }
        if let Some(&(i, len, peak)) = self.over_bound.first() {
            panic!(
                "{}: {} input(s) over the memory bound; first: {} peaked at {peak} bytes for {len} input bytes",
                self.parser,
                self.over_bound.len(),
                show(i)
            );
        }
        eprintln!(
            "fuzz {}: {} inputs, {} accepted, {} refused, 0 panics, 0 over the bound; \
             largest peak {} bytes, at most {:.0} % of the bound",
            self.parser,
            self.n_inputs,
            self.n_accepted,
            self.n_rejected,
            self.max_peak_bytes,
            100.0 * self.max_peak_over_bound
        );
    }
}

/// Parses every corpus input (each must be accepted), then `n` mutants of them, each under
/// `catch_unwind` and [`measure_peak`], with `bound(input length)` the most bytes a parse may
/// allocate.
///
/// # Panics
/// If a corpus input is refused (the fuzzing would be shallow), or if [`PeakAlloc`] is not the
/// global allocator (the memory figure would be empty).
pub fn run<E: std::fmt::Display>(
    parser: &str,
    corpus: &[Vec<u8>],
    tokens: &[&[u8]],
    n: usize,
    seed: u64,
    bound: impl Fn(usize) -> usize,
    mut parse: impl FnMut(&[u8]) -> Result<(), E>,
) -> Report {
    assert!(peak_alloc_installed(), "install llb_types::fuzz::PeakAlloc as the global allocator");
    for (i, input) in corpus.iter().enumerate() {
        if let Err(e) = parse(input) {
            panic!("{parser}: corpus input {i} is refused: {e}");
        }
    }
    let inputs = mutants(corpus, tokens, n, seed);
    let mut report = Report {
        parser: parser.to_owned(),
        n_inputs: inputs.len(),
        n_accepted: 0,
        n_rejected: 0,
        panics: Vec::new(),
        max_peak_bytes: 0,
        max_peak_over_bound: 0.0,
        over_bound: Vec::new(),
        inputs: Vec::new(),
    };
    for (i, input) in inputs.iter().enumerate() {
        let (outcome, peak) =
            measure_peak(|| std::panic::catch_unwind(AssertUnwindSafe(|| parse(input))));
        match outcome {
            Ok(Ok(())) => report.n_accepted += 1,
            Ok(Err(_)) => report.n_rejected += 1,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                report.panics.push((i, message));
            }
        }
        report.max_peak_bytes = report.max_peak_bytes.max(peak);
        let limit = bound(input.len());
        report.max_peak_over_bound = report.max_peak_over_bound.max(peak as f64 / limit as f64);
        if peak > limit {
            report.over_bound.push((i, input.len(), peak));
        }
    }
    report.inputs = inputs;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOC: PeakAlloc = PeakAlloc;

    /// A parser that trusts a length byte: allocates `256 × byte` bytes, and panics on 0xff.
    fn trusting(input: &[u8]) -> Result<(), String> {
        match input.first() {
            Some(0xff) => panic!("length 255"),
            Some(&n) => {
                std::hint::black_box(vec![0u8; 256 * usize::from(n)]);
                Ok(())
            }
            None => Err("empty".into()),
        }
    }

    #[test]
    fn the_harness_counts_panics_and_peaks_over_the_bound() {
        assert!(peak_alloc_installed());
        let corpus = vec![vec![1u8, 2, 3]];
        let report = run("trusting", &corpus, &[], 300, 1, |len| 64 * len + 1024, trusting);
        assert_eq!(report.n_inputs, 300);
        assert_eq!(report.n_accepted + report.n_rejected + report.panics.len(), 300);
        assert!(!report.panics.is_empty(), "0xff is among the interesting bytes");
        assert!(!report.over_bound.is_empty(), "a large length byte goes over the bound");
        assert!(report.max_peak_bytes >= 256 * 200);
        let err = std::panic::catch_unwind(|| report.assert_clean()).unwrap_err();
        assert!(err.downcast_ref::<String>().unwrap().contains("trusting: "));
    }

    #[test]
    fn mutants_are_deterministic_and_varied() {
        let corpus = vec![b"hello, world".to_vec(), vec![1, 2, 3, 4, 5, 6, 7, 8]];
        let a = mutants(&corpus, &[b"NaN"], 500, 7);
        assert_eq!(a, mutants(&corpus, &[b"NaN"], 500, 7));
        assert_ne!(a, mutants(&corpus, &[b"NaN"], 500, 8));
        let distinct: std::collections::BTreeSet<_> = a.iter().collect();
        assert!(distinct.len() > 400, "{} distinct mutants", distinct.len());
        assert!(a.iter().any(|m| m.len() < 8) && a.iter().any(|m| m.len() > 12));
        assert!(a.iter().any(|m| m.windows(3).any(|w| w == b"NaN")));
    }
}
