//! Registries: rule names mapped to constructors, so that other projects add rules without forking.

use crate::spec::check_rule_name;
use crate::{Aggregator, BuiltinAggregator, BuiltinSelector, Error, Result, RuleSpec, Selector};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// A constructor: builds a rule from its JSON parameters (`null` when the spec has none).
pub type Constructor<R> = Box<dyn Fn(&Value) -> Result<Box<R>> + Send + Sync>;

/// A value mapping kebab-case base names to rule constructors.
///
/// `R` is `dyn Aggregator` ([`AggregatorRegistry`]) or `dyn Selector` ([`SelectorRegistry`]).
/// A registry is passed explicitly to whoever builds rules; there is no global one.
/// Names iterate in sorted order.
pub struct Registry<R: ?Sized> {
    constructors: BTreeMap<String, Constructor<R>>,
}

/// A registry of fusion rules.
pub type AggregatorRegistry = Registry<dyn Aggregator>;
/// A registry of selection rules.
pub type SelectorRegistry = Registry<dyn Selector>;

impl<R: ?Sized> Registry<R> {
    /// A registry with no rules.
    pub fn empty() -> Self {
        Self { constructors: BTreeMap::new() }
    }

    /// Adds a rule under a kebab-case base name (without parameters, e.g. `trimmed-mean`).
    ///
    /// # Errors
    /// [`Error::InvalidRuleSpec`] for a name that is not kebab-case, [`Error::DuplicateRule`]
    /// (listing the known names) when the name is taken.
    pub fn register(
        &mut self,
        name: &str,
        constructor: impl Fn(&Value) -> Result<Box<R>> + Send + Sync + 'static,
    ) -> Result<()> {
        check_rule_name(name)?;
        if self.constructors.contains_key(name) {
            return Err(Error::DuplicateRule { name: name.to_string(), known: self.known() });
        }
        self.constructors.insert(name.to_string(), Box::new(constructor));
        Ok(())
    }

    /// The registered base names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.constructors.keys().map(String::as_str)
    }

    /// `true` when `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.constructors.contains_key(name)
    }

    /// Builds a rule from its text form, e.g. `mean` or `trimmed-mean(0.1)` (see [`RuleSpec`]).
    ///
    /// # Errors
    /// [`Error::InvalidRuleSpec`], [`Error::UnknownRule`] (listing the known names), or the
    /// constructor's error for bad parameters.
    pub fn build(&self, spec: &str) -> Result<Box<R>> {
        let spec: RuleSpec = spec.parse()?;
        self.build_with(&spec.name, &spec.params)
    }

    /// Builds a rule from a base name and JSON parameters.
    ///
    /// # Errors
    /// As [`Registry::build`].
    pub fn build_with(&self, name: &str, params: &Value) -> Result<Box<R>> {
        let constructor = self
            .constructors
            .get(name)
            .ok_or_else(|| Error::UnknownRule { name: name.to_string(), known: self.known() })?;
        constructor(params)
    }

    fn known(&self) -> Vec<String> {
        self.constructors.keys().cloned().collect()
    }
}

impl Registry<dyn Aggregator> {
    /// A registry holding every [`BuiltinAggregator`].
    pub fn with_builtins() -> Self {
        let mut registry = Self::empty();
        for &name in BuiltinAggregator::BASE_NAMES {
            let added = registry.register(name, move |params| {
                Ok(Box::new(BuiltinAggregator::from_params(name, params)?) as Box<dyn Aggregator>)
            });
            debug_assert!(added.is_ok(), "built-in names are unique and kebab-case");
        }
        registry
    }
}

impl Registry<dyn Selector> {
    /// A registry holding every [`BuiltinSelector`].
    pub fn with_builtins() -> Self {
        let mut registry = Self::empty();
        for &name in BuiltinSelector::BASE_NAMES {
            let added = registry.register(name, move |params| {
                Ok(Box::new(BuiltinSelector::from_params(name, params)?) as Box<dyn Selector>)
            });
            debug_assert!(added.is_ok(), "built-in names are unique and kebab-case");
        }
        registry
    }
}

impl<R: ?Sized> fmt::Debug for Registry<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("names", &self.known()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_registered_and_build_from_specs() {
        let aggregators = AggregatorRegistry::with_builtins();
        let mut names: Vec<&str> = aggregators.names().collect();
        names.sort_unstable();
        let mut expected = BuiltinAggregator::BASE_NAMES.to_vec();
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert_eq!(aggregators.build("trimmed-mean(0.25)").unwrap().name(), "trimmed-mean(0.25)");
        let selectors = SelectorRegistry::with_builtins();
        assert_eq!(selectors.build("keep-fraction(0.4)").unwrap().name(), "keep-fraction(0.4)");
        assert_eq!(selectors.build("mad(3)").unwrap().name(), "mad(3)");
        assert_eq!(selectors.names().count(), BuiltinSelector::BASE_NAMES.len());
    }

    #[test]
    fn every_builtin_name_round_trips_through_the_registry() {
        let aggregators = AggregatorRegistry::with_builtins();
        for rule in BuiltinAggregator::examples() {
            assert_eq!(aggregators.build(&rule.name()).unwrap().name(), rule.name());
            assert_eq!(rule.name().parse::<BuiltinAggregator>().unwrap(), rule);
        }
        let selectors = SelectorRegistry::with_builtins();
        for rule in BuiltinSelector::examples() {
            assert_eq!(selectors.build(&rule.name()).unwrap().name(), rule.name());
            assert_eq!(rule.name().parse::<BuiltinSelector>().unwrap(), rule);
        }
    }

    #[test]
    fn unknown_and_duplicate_names_list_the_known_ones() {
        let mut registry = SelectorRegistry::with_builtins();
        let msg = registry.build("top-k(3)").err().unwrap().to_string();
        assert_eq!(msg, "unknown rule `top-k`; known rules: gmm-split, keep-fraction, mad");
        let msg = registry
            .register("mad", |_| Ok(Box::new(BuiltinSelector::GmmSplit)))
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "rule `mad` is already registered; known rules: gmm-split, keep-fraction, mad"
        );
        assert!(
            registry.register("Bad_Name", |_| Ok(Box::new(BuiltinSelector::GmmSplit))).is_err()
        );
    }

    #[test]
    fn bad_parameters_are_errors() {
        let aggregators = AggregatorRegistry::with_builtins();
        for spec in [
            "trimmed-mean(0.5)",
            "trimmed-mean(-0.1)",
            "trimmed-mean",
            "mean(1)",
            "trimmed-mean(x)",
        ] {
            assert!(aggregators.build(spec).is_err(), "{spec}");
        }
        let selectors = SelectorRegistry::with_builtins();
        for spec in
            ["keep-fraction(0)", "keep-fraction(1.5)", "keep-fraction", "mad(-1)", "gmm-split(2)"]
        {
            assert!(selectors.build(spec).is_err(), "{spec}");
        }
    }
}
