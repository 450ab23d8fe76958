//! The id newtypes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Stable id of one image: by convention its path relative to the data set root, with `/`
/// separators (e.g. `brick/test/scratch/003.png`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SampleId(String);

impl SampleId {
    /// Wraps a string as a sample id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SampleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SampleId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for SampleId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

/// Id of a physical sample photographed from several views (Real-IAD: 5 cameras).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupId(String);

impl GroupId {
    /// Wraps a string as a group id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Ground truth of an image, when the data set knows it.
///
/// In a contaminated (FUIAD) training set the label of each training image is hidden from every
/// model and kept only for purity reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Label {
    /// A defect-free image.
    Normal,
    /// A defective image.
    Anomalous,
}

impl Label {
    /// `true` for [`Label::Anomalous`].
    pub fn is_anomalous(self) -> bool {
        matches!(self, Label::Anomalous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_as_strings() {
        let mut ids =
            [SampleId::new("b/2.png"), SampleId::new("a/10.png"), SampleId::new("a/1.png")];
        ids.sort();
        let got: Vec<&str> = ids.iter().map(SampleId::as_str).collect();
        assert_eq!(got, ["a/1.png", "a/10.png", "b/2.png"]);
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        let json = serde_json::to_string(&SampleId::new("x.png")).unwrap();
        assert_eq!(json, "\"x.png\"");
        assert_eq!(serde_json::to_string(&Label::Anomalous).unwrap(), "\"anomalous\"");
    }

    #[test]
    fn autotraits() {
        fn check<T: Send + Sync + 'static>() {}
        check::<SampleId>();
        check::<GroupId>();
        check::<Label>();
    }
}
