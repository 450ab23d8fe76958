//! A person's keep / drop decisions on training samples, read from a `decisions.csv` file, and
//! [`Selection::apply_decisions`], which lets them overrule a selection rule.
//!
//! The file has the header `id,decision` and one record per reviewed sample; `decision` is `keep`
//! or `drop`. Fields holding `,`, `"` or a line break are quoted with `"` (RFC 4180, quotes
//! doubled); blank lines are ignored. A sample listed twice with the same decision counts once;
//! with different decisions it is an error, so the outcome never depends on the order of lines.

use crate::{Error, FusedScores, Result, Selection};
use llb_types::SampleId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The header line of a decisions CSV file.
pub const DECISIONS_CSV_HEADER: &str = "id,decision";

/// What a person decided for one training sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Train the final model on it, whatever its fused score.
    Keep,
    /// Leave it out of the final model, whatever its fused score.
    Drop,
}

impl Decision {
    /// The decision's word in a decisions file: `keep` or `drop`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Keep => "keep",
            Decision::Drop => "drop",
        }
    }
}

/// Decisions on a set of samples, with the file they came from (for error messages).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decisions {
    /// The file the decisions were read from.
    pub source: PathBuf,
    /// One decision per reviewed sample.
    pub by_id: BTreeMap<SampleId, Decision>,
}

impl Decisions {
    /// Reads a decisions file (see the module docs for the format).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, otherwise as [`Decisions::from_csv_str`].
    pub fn load_csv(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Io { path: path.into(), source })?;
        Self::from_csv_str(&text, path)
    }

    /// Parses decisions CSV text; `path` names the source in errors and in [`Decisions::source`].
    ///
    /// # Errors
    /// [`Error::Csv`] naming the line of a wrong header, a record without exactly two fields, an
    /// empty id, a decision other than `keep` or `drop`, or a second, different decision for an
    /// id.
    pub fn from_csv_str(text: &str, path: &Path) -> Result<Self> {
        let err =
            |line: usize, message: String| Error::Csv { path: path.to_path_buf(), line, message };
        let records = crate::csv::parse_records(text).map_err(|(line, m)| err(line, m))?;
        let mut records = records.into_iter().filter(|(_, fields)| fields != &[""]);
        let Some((line, header)) = records.next() else {
            return Err(err(
                1,
                format!("empty file, expected the header `{DECISIONS_CSV_HEADER}`"),
            ));
        };
        if header.join(",") != DECISIONS_CSV_HEADER {
            let got = header.join(",");
            return Err(err(line, format!("header is `{got}`, expected `{DECISIONS_CSV_HEADER}`")));
        }
        let mut by_id = BTreeMap::new();
        let mut first_line = BTreeMap::new();
        for (line, fields) in records {
            let [id, decision] = <[String; 2]>::try_from(fields)
                .map_err(|f| err(line, format!("{} field(s), expected 2", f.len())))?;
            if id.is_empty() {
                return Err(err(line, "empty id".into()));
            }
            let decision = match decision.as_str() {
                "keep" => Decision::Keep,
                "drop" => Decision::Drop,
                other => {
                    return Err(err(line, format!("decision `{other}` is not `keep` or `drop`")));
                }
            };
            let id = SampleId::new(id);
            match by_id.insert(id.clone(), decision) {
                Some(earlier) if earlier != decision => {
                    return Err(err(
                        line,
                        format!(
                            "`{id}` is marked `{}` here and `{}` on line {}",
                            decision.as_str(),
                            earlier.as_str(),
                            first_line[&id]
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    first_line.insert(id, line);
                }
            }
        }
        Ok(Self { source: path.to_path_buf(), by_id })
    }

    /// The number of reviewed samples.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// `true` when the file held no decision.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

impl Selection {
    /// This selection with a person's decisions applied: samples marked `keep` are kept and
    /// samples marked `drop` are dropped, whatever the rule decided; every other sample keeps the
    /// rule's verdict.
    ///
    /// The result is a pure function of the (id, fused score) pairs, the rule's verdicts and the
    /// set of decisions: `kept` and `dropped` are ordered by ascending fused score, ties by id,
    /// as a rule's are. `rule` becomes `<rule>+decisions`, and `cut` stays the rule's cut, so
    /// reviewed samples may sit on either side of it.
    ///
    /// # Errors
    /// [`Error::UnknownDecision`] naming the first id (in id order) of `decisions` that `fused`
    /// does not score, and the file; [`Error::Rule`] when this selection lists a sample that
    /// `fused` does not score; [`Error::EmptySelection`] when the decisions drop every sample.
    pub fn apply_decisions(&self, fused: &FusedScores, decisions: &Decisions) -> Result<Selection> {
        let rule_keeps: BTreeMap<&SampleId, bool> = self
            .kept
            .iter()
            .map(|id| (id, true))
            .chain(self.dropped.iter().map(|id| (id, false)))
            .collect();
        if let Some(id) = decisions.by_id.keys().find(|id| !rule_keeps.contains_key(id)) {
            return Err(Error::UnknownDecision {
                path: decisions.source.clone(),
                sample_id: id.clone(),
            });
        }
        let (mut kept, mut dropped) = (Vec::new(), Vec::new());
        let ids = fused.sample_ids();
        for i in fused.ascending_order() {
            let id = &ids[i];
            let Some(&rule_keep) = rule_keeps.get(id) else {
                return Err(Error::Rule {
                    rule: self.rule.clone(),
                    message: format!("selection does not list sample `{id}` of the fused scores"),
                });
            };
            let keep = match decisions.by_id.get(id) {
                Some(decision) => *decision == Decision::Keep,
                None => rule_keep,
            };
            if keep { kept.push(id.clone()) } else { dropped.push(id.clone()) }
        }
        let rule = format!("{}+decisions", self.rule);
        if kept.is_empty() {
            return Err(Error::EmptySelection { rule, n_samples: fused.len() });
        }
        if kept.len() + dropped.len() != rule_keeps.len() {
            return Err(Error::Rule {
                rule: self.rule.clone(),
                message: "selection lists samples the fused scores do not hold".into(),
            });
        }
        Ok(Selection { rule, kept, dropped, cut: self.cut })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuiltinSelector, Selector};

    fn ids(names: &[&str]) -> Vec<SampleId> {
        names.iter().map(|n| SampleId::new(*n)).collect()
    }

    /// Five samples scored 1..5; `keep-fraction(0.6)` keeps a, b, c and drops d, e.
    fn fused() -> FusedScores {
        FusedScores::new("mean", ids(&["c", "a", "e", "b", "d"]), vec![3.0, 1.0, 5.0, 2.0, 4.0])
            .unwrap()
    }

    fn selection(fused: &FusedScores) -> Selection {
        BuiltinSelector::KeepFraction { keep_fraction: 0.6 }.select(fused).unwrap()
    }

    fn decisions(text: &str) -> Result<Decisions> {
        Decisions::from_csv_str(text, Path::new("decisions.csv"))
    }

    /// Applies `text` to the fixture and compares the kept and dropped ids.
    fn check(text: &str, kept: &[&str], dropped: &[&str]) {
        let fused = fused();
        let out = selection(&fused).apply_decisions(&fused, &decisions(text).unwrap()).unwrap();
        assert_eq!((out.kept, out.dropped), (ids(kept), ids(dropped)), "{text}");
    }

    #[test]
    fn decisions_overrule_the_rule_and_nothing_else() {
        check("id,decision\n", &["a", "b", "c"], &["d", "e"]);
        check("id,decision\nd,keep\n", &["a", "b", "c", "d"], &["e"]);
        check("id,decision\na,drop\ne,keep\n", &["b", "c", "e"], &["a", "d"]);
        // Agreeing with the rule changes nothing; a repeated identical line counts once.
        check("id,decision\na,keep\ne,drop\ne,drop\n", &["a", "b", "c"], &["d", "e"]);
    }

    #[test]
    fn the_outcome_does_not_depend_on_line_or_row_order() {
        let fused = fused();
        let forward = decisions("id,decision\na,drop\ne,keep\nb,keep\n").unwrap();
        let backward = decisions("id,decision\r\nb,keep\r\ne,keep\r\na,drop\r\n").unwrap();
        assert_eq!(forward, backward);
        let expected = selection(&fused).apply_decisions(&fused, &forward).unwrap();
        let permuted = fused.permuted(&[4, 2, 0, 3, 1]).unwrap();
        let out = selection(&permuted).apply_decisions(&permuted, &backward).unwrap();
        assert_eq!(out, expected);
        assert_eq!(out.rule, "keep-fraction(0.6)+decisions");
        assert_eq!(out.cut, 3.0, "the rule's cut is kept");
    }

    #[test]
    fn quoted_ids_are_read_whole() {
        let text = "id,decision\n\"x,\"\"y\"\".png\",drop\n";
        let d = decisions(text).unwrap();
        assert_eq!(d.by_id[&SampleId::new("x,\"y\".png")], Decision::Drop);
    }

    #[test]
    fn unknown_ids_name_the_id_and_the_file() {
        let fused = fused();
        let d = decisions("id,decision\nzz.png,keep\na,drop\n").unwrap();
        let msg = selection(&fused).apply_decisions(&fused, &d).unwrap_err().to_string();
        assert_eq!(msg, "decisions.csv: sample `zz.png` is not a training sample of this fit");
    }

    #[test]
    fn dropping_everything_is_an_error() {
        let fused = fused();
        let d = decisions("id,decision\na,drop\nb,drop\nc,drop\n").unwrap();
        let err = selection(&fused).apply_decisions(&fused, &d).unwrap_err();
        assert!(matches!(err, Error::EmptySelection { n_samples: 5, .. }), "{err}");
    }

    #[test]
    fn malformed_files_name_the_line_and_value() {
        let cases = [
            ("", "decisions.csv:1: empty file"),
            ("sample_id,decision\n", "decisions.csv:1: header is `sample_id,decision`"),
            ("id,decision\na,maybe\n", "decisions.csv:2: decision `maybe` is not"),
            ("id,decision\na,keep,x\n", "decisions.csv:2: 3 field(s), expected 2"),
            ("id,decision\n,keep\n", "decisions.csv:2: empty id"),
            (
                "id,decision\na,keep\n\nb,drop\na,drop\n",
                "decisions.csv:5: `a` is marked `drop` here and `keep` on line 2",
            ),
            ("id,decision\n\"a,keep\n", "decisions.csv:2: quoted field is not closed"),
        ];
        for (text, needle) in cases {
            let msg = decisions(text).unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        }
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let msg = Decisions::load_csv(Path::new("/nonexistent/d.csv")).unwrap_err().to_string();
        assert!(msg.starts_with("/nonexistent/d.csv: "), "{msg}");
    }
}
