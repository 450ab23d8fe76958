//! Rule specs: the text form `name` or `name(arg, …)` of a rule, as the CLI and configs write it.

use crate::{Error, Result};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// A parsed rule spec: a kebab-case base name plus its parameters as JSON.
///
/// `mean` parses to `("mean", null)`, `trimmed-mean(0.1)` to `("trimmed-mean", 0.1)` and
/// `foo(1, true, "x")` to `("foo", [1, true, "x"])`.
/// An argument that is not valid JSON is taken as a string, so `foo(bar)` gives `"bar"`.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSpec {
    /// The base name, e.g. `trimmed-mean`.
    pub name: String,
    /// The parameters: `null` without parentheses, one value for one argument, an array for more.
    pub params: Value,
}

/// Checks that `name` is kebab-case: lower-case ASCII letters, digits and single inner `-`,
/// starting with a letter.
///
/// # Errors
/// [`Error::InvalidRuleSpec`] naming the rule.
pub fn check_rule_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidRuleSpec { spec: name.to_string(), reason: reason.to_string() })
    };
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return bad("a rule name starts with a lower-case ASCII letter");
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return bad("a rule name is kebab-case: lower-case ASCII letters, digits and `-`");
    }
    if name.ends_with('-') || name.contains("--") {
        return bad("a rule name has no leading, trailing or doubled `-`");
    }
    Ok(())
}

impl FromStr for RuleSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidRuleSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let text = spec.trim();
        let (name, params) = match text.split_once('(') {
            None => (text, Value::Null),
            Some((name, rest)) => {
                let inner = rest.strip_suffix(')').ok_or_else(|| bad("missing the closing `)`"))?;
                if inner.contains(['(', ')']) {
                    return Err(bad("nested parentheses are not supported"));
                }
                (name.trim_end(), parse_args(inner))
            }
        };
        check_rule_name(name).map_err(|e| match e {
            Error::InvalidRuleSpec { reason, .. } => bad(&reason),
            other => other,
        })?;
        Ok(Self { name: name.to_string(), params })
    }
}

fn parse_args(inner: &str) -> Value {
    if inner.trim().is_empty() {
        return Value::Null;
    }
    let mut args: Vec<Value> = inner
        .split(',')
        .map(|a| {
            let a = a.trim();
            serde_json::from_str(a).unwrap_or_else(|_| Value::String(a.to_string()))
        })
        .collect();
    if args.len() == 1 { args.pop().unwrap_or(Value::Null) } else { Value::Array(args) }
}

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        match &self.params {
            Value::Null => Ok(()),
            Value::Array(args) => {
                let args: Vec<String> = args.iter().map(Value::to_string).collect();
                write!(f, "({})", args.join(", "))
            }
            one => write!(f, "({one})"),
        }
    }
}

/// Reads a single number parameter: a bare number, or an object `{"<field>": number}`.
///
/// # Errors
/// [`Error::InvalidParameter`] naming the rule and field.
pub(crate) fn number_param(
    rule: &str,
    field: &'static str,
    params: &Value,
    expected: &'static str,
) -> Result<f64> {
    let value = match params {
        Value::Object(map) if map.len() == 1 => map.get(field),
        other => Some(other),
    };
    value.and_then(Value::as_f64).ok_or_else(|| Error::InvalidParameter {
        rule: rule.to_string(),
        parameter: field,
        value: params.to_string(),
        expected,
    })
}

/// Requires that a parameterless rule got no parameters.
pub(crate) fn no_params(rule: &str, params: &Value) -> Result<()> {
    match params {
        Value::Null => Ok(()),
        Value::Object(map) if map.is_empty() => Ok(()),
        other => Err(Error::InvalidParameter {
            rule: rule.to_string(),
            parameter: "(none)",
            value: other.to_string(),
            expected: "no parameters",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(spec: &str, expected: Option<(&str, Value)>) {
        let got = spec.parse::<RuleSpec>();
        match expected {
            Some((name, params)) => {
                let got = got.unwrap();
                assert_eq!((got.name.as_str(), &got.params), (name, &params), "{spec}");
                assert_eq!(
                    got.to_string().parse::<RuleSpec>().unwrap(),
                    got,
                    "display round trip of {spec}"
                );
            }
            None => assert!(got.is_err(), "{spec} should be rejected"),
        }
    }

    #[test]
    fn specs_parse() {
        check("mean", Some(("mean", Value::Null)));
        check(" trimmed-mean(0.1) ", Some(("trimmed-mean", json!(0.1))));
        check("keep-fraction( 0.2 )", Some(("keep-fraction", json!(0.2))));
        check("foo(1, true, bar)", Some(("foo", json!([1, true, "bar"]))));
        check("foo()", Some(("foo", Value::Null)));
        check("Mean", None);
        check("mean(", None);
        check("a((1))", None);
        check("-x", None);
        check("x-", None);
        check("a--b", None);
        check("snake_case", None);
        check("", None);
    }

    #[test]
    fn number_params_accept_bare_and_named_forms() {
        assert_eq!(number_param("r", "p", &json!(0.5), "a number").unwrap(), 0.5);
        assert_eq!(number_param("r", "p", &json!({"p": 2}), "a number").unwrap(), 2.0);
        let msg = number_param("r", "p", &json!("x"), "a number").unwrap_err().to_string();
        assert_eq!(msg, "rule `r`: parameter `p` = \"x\" is invalid, expected a number");
        assert!(no_params("r", &json!(1)).is_err());
        assert!(no_params("r", &Value::Null).is_ok());
    }
}
