//! Crate-level tests: golden values of every built-in rule, the selection regression, the
//! conformance kit run on the built-ins, and the adaptive rules end to end.

// The adaptive selection rules on synthetic contaminated sets, judged by the purity report.
mod adaptive;
// Seeded mutants of real score tables through the CSV reader: no panic, bounded memory.
mod fuzz;
// Hand-computed expected values of every built-in rule, named by its kebab-case string.
mod golden;
// The conformance kit on every built-in, and on deliberately broken rules it must reject.
mod kit;
// Regression tests, each named for the bug it pins.
mod regression;

#[test]
fn autotraits() {
    fn check<T: Send + Sync + 'static>() {}
    check::<crate::ScoreTable>();
    check::<crate::FusedScores>();
    check::<crate::Selection>();
    check::<crate::Purification>();
    check::<crate::PurifyConfig>();
    check::<crate::PurityReport>();
    check::<crate::Histogram>();
    check::<crate::Decisions>();
    check::<crate::Error>();
    check::<crate::AggregatorRegistry>();
    check::<crate::SelectorRegistry>();
    check::<Box<dyn crate::Aggregator>>();
    check::<Box<dyn crate::Selector>>();
    check::<crate::testing::ConformanceError>();
}
