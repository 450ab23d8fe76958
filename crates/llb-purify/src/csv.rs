//! CSV persistence of a [`ScoreTable`], in long format.
//!
//! The file has the header `sample_id,model,anomaly_score,in_subset` and one record per
//! (sample, model) cell, written sample by sample in row order and, within a sample, in model order.
//! Scores are written with Rust's shortest round-trip formatting, so loading gives back the exact
//! `f32` bits; `in_subset` is `true` or `false`.
//! Fields holding `,`, `"` or a line break are quoted with `"` (RFC 4180, quotes doubled).
//! Loading accepts the records in any order: samples and models take the order of their first
//! appearance, and every (sample, model) pair must appear exactly once.

use crate::{Error, Result, ScoreCell, ScoreTable};
use llb_types::SampleId;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The header line of a score CSV file.
pub const SCORE_CSV_HEADER: &str = "sample_id,model,anomaly_score,in_subset";

impl ScoreTable {
    /// The table as CSV text (see the module docs for the format).
    pub fn to_csv_string(&self) -> String {
        let mut out = String::with_capacity(32 * self.n_samples() * self.n_models());
        out.push_str(SCORE_CSV_HEADER);
        out.push('\n');
        for (id, row) in self.rows() {
            for (cell, model) in row.iter().zip(self.models()) {
                push_field(&mut out, id.as_str());
                out.push(',');
                push_field(&mut out, model);
                out.push_str(&format!(",{:?},{}\n", cell.anomaly_score, cell.in_subset));
            }
        }
        out
    }

    /// Writes the table to `path` atomically ([`llb_types::atomic::write`]: a uniquely named
    /// temporary file in the same folder, synced, then renamed).
    ///
    /// # Errors
    /// [`Error::Io`] naming the file when writing or renaming fails.
    pub fn save_csv(&self, path: &Path) -> Result<()> {
        let text = self.to_csv_string();
        llb_types::atomic::write(path, text.as_bytes())
            .map_err(|source| Error::Io { path: path.to_path_buf(), source })
    }

    /// Reads a table written by [`ScoreTable::save_csv`] (or any file in the same format).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, [`Error::Csv`] naming the line of a malformed
    /// record, [`Error::CsvMissingCell`] when a (sample, model) pair is missing, and the
    /// validation errors of [`ScoreTable::new`].
    pub fn load_csv(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Io { path: path.into(), source })?;
        Self::from_csv_str(&text, path)
    }

    /// Parses CSV text; `path` only names the source in error messages.
    ///
    /// # Errors
    /// As [`ScoreTable::load_csv`], except for IO.
    pub fn from_csv_str(text: &str, path: &Path) -> Result<Self> {
        let err =
            |line: usize, message: String| Error::Csv { path: path.to_path_buf(), line, message };
        let records = parse_records(text).map_err(|(line, m)| err(line, m))?;
        let mut records = records.into_iter().filter(|(_, fields)| fields != &[""]);
        let Some((line, header)) = records.next() else {
            return Err(err(1, format!("empty file, expected the header `{SCORE_CSV_HEADER}`")));
        };
        if header.join(",") != SCORE_CSV_HEADER {
            return Err(err(
                line,
                format!("header is `{}`, expected `{SCORE_CSV_HEADER}`", header.join(",")),
            ));
        }
        let mut samples: Vec<SampleId> = Vec::new();
        let mut sample_index = BTreeMap::new();
        let mut models: Vec<String> = Vec::new();
        let mut model_index = BTreeMap::new();
        let mut cells: BTreeMap<(usize, usize), ScoreCell> = BTreeMap::new();
        for (line, fields) in records {
            let [id, model, score, in_subset] = <[String; 4]>::try_from(fields)
                .map_err(|f| err(line, format!("{} field(s), expected 4", f.len())))?;
            let anomaly_score: f32 = score
                .parse()
                .map_err(|_| err(line, format!("anomaly_score `{score}` is not a number")))?;
            if !anomaly_score.is_finite() {
                return Err(err(line, format!("anomaly_score `{score}` is not finite")));
            }
            let in_subset = match in_subset.as_str() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(err(line, format!("in_subset `{other}` is not `true` or `false`")));
                }
            };
            let id = SampleId::new(id);
            let s = *sample_index.entry(id.clone()).or_insert_with(|| {
                samples.push(id.clone());
                samples.len() - 1
            });
            let m = *model_index.entry(model.clone()).or_insert_with(|| {
                models.push(model.clone());
                models.len() - 1
            });
            if cells.insert((s, m), ScoreCell { anomaly_score, in_subset }).is_some() {
                return Err(err(
                    line,
                    format!("second score for sample `{id}` under model `{model}`"),
                ));
            }
        }
        let mut rows = Vec::with_capacity(samples.len());
        for (s, id) in samples.iter().enumerate() {
            let mut row = Vec::with_capacity(models.len());
            for (m, model) in models.iter().enumerate() {
                let cell = cells.get(&(s, m)).ok_or_else(|| Error::CsvMissingCell {
                    path: PathBuf::from(path),
                    sample_id: id.clone(),
                    model: model.clone(),
                })?;
                row.push(*cell);
            }
            rows.push((id.clone(), row));
        }
        Self::new(models, rows)
    }
}

/// Appends one field, quoted when it holds a delimiter, a quote or a line break.
fn push_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// One CSV record: the 1-based line it starts on and its fields.
pub(crate) type Record = (usize, Vec<String>);

/// Splits CSV text into records of fields, each with the 1-based line it starts on.
/// Accepts `\n` and `\r\n` line ends.
pub(crate) fn parse_records(text: &str) -> std::result::Result<Vec<Record>, (usize, String)> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let (mut line, mut start_line) = (1, 1);
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut field_started_quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => {
                    line += usize::from(c == '\n');
                    field.push(c);
                }
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !field_started_quoted => {
                quoted = true;
                field_started_quoted = true;
            }
            '"' => return Err((line, "stray `\"` inside an unquoted field".into())),
            ',' => {
                fields.push(std::mem::take(&mut field));
                field_started_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                records.push((start_line, std::mem::take(&mut fields)));
                field_started_quoted = false;
                line += 1;
                start_line = line;
            }
            _ if field_started_quoted => return Err((line, "text after a closing `\"`".into())),
            _ => field.push(c),
        }
    }
    if quoted {
        return Err((start_line, "quoted field is not closed".into()));
    }
    if !field.is_empty() || !fields.is_empty() || field_started_quoted {
        fields.push(field);
        records.push((start_line, fields));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ScoreTable {
        let models = vec!["m0".to_string(), "m,1".to_string()];
        let rows = vec![
            (
                SampleId::new("plain.png"),
                vec![ScoreCell::in_subset(0.1), ScoreCell::out_of_subset(1e-30)],
            ),
            (
                SampleId::new("a,\"b\"\nc.png"),
                vec![ScoreCell::out_of_subset(-0.0), ScoreCell::in_subset(3.4e38)],
            ),
            (
                SampleId::new("x"),
                vec![ScoreCell::out_of_subset(1.0 / 3.0), ScoreCell::in_subset(f32::MIN_POSITIVE)],
            ),
        ];
        ScoreTable::new(models, rows).unwrap()
    }

    fn bits(t: &ScoreTable) -> Vec<u32> {
        (0..t.n_models()).flat_map(|m| t.column_scores(m)).map(f32::to_bits).collect()
    }

    #[test]
    fn save_then_load_round_trips_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.csv");
        let t = table();
        t.save_csv(&path).unwrap();
        let back = ScoreTable::load_csv(&path).unwrap();
        assert_eq!(back, t);
        assert_eq!(bits(&back), bits(&t));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "the temporary file must be renamed away");
    }

    #[test]
    fn records_in_any_order_load_and_crlf_is_accepted() {
        let text = "sample_id,model,anomaly_score,in_subset\r\nb,m1,4,false\r\na,m0,1.5,true\r\n\
                    a,m1,2,false\r\nb,m0,3,true\r\n";
        let t = ScoreTable::from_csv_str(text, Path::new("t.csv")).unwrap();
        assert_eq!(t.sample_ids(), [SampleId::new("b"), SampleId::new("a")]);
        assert_eq!(t.models(), ["m1", "m0"]);
        assert_eq!(t.column_scores(1), [3.0, 1.5]);
        assert!(t.row(0)[1].in_subset && !t.row(0)[0].in_subset);
    }

    #[test]
    fn malformed_files_name_the_line_and_value() {
        let h = SCORE_CSV_HEADER;
        let cases = [
            ("", "t.csv:1: empty file".to_string()),
            ("id,model,score,in\n", "t.csv:1: header is `id,model,score,in`".to_string()),
            (
                &format!("{h}\na,m,1,true\na,m,2,true\n") as &str,
                "t.csv:3: second score for sample `a`".into(),
            ),
            (&format!("{h}\na,m,x,true\n"), "t.csv:2: anomaly_score `x` is not a number".into()),
            (&format!("{h}\na,m,NaN,true\n"), "t.csv:2: anomaly_score `NaN` is not finite".into()),
            (&format!("{h}\na,m,inf,true\n"), "anomaly_score `inf` is not finite".into()),
            (&format!("{h}\na,m,1,yes\n"), "t.csv:2: in_subset `yes`".into()),
            (&format!("{h}\na,m,1\n"), "t.csv:2: 3 field(s), expected 4".into()),
            (&format!("{h}\n\"a,m,1,true\n"), "t.csv:2: quoted field is not closed".into()),
            (&format!("{h}\na\"b,m,1,true\n"), "t.csv:2: stray".into()),
            (
                &format!("{h}\na,m0,1,true\nb,m1,1,true\n"),
                "no score for sample `a` under model `m1`".into(),
            ),
        ];
        for (text, needle) in cases {
            let msg = ScoreTable::from_csv_str(text, Path::new("t.csv")).unwrap_err().to_string();
            assert!(msg.contains(&needle), "{msg:?} lacks {needle:?}");
        }
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let msg = ScoreTable::load_csv(Path::new("/nonexistent/s.csv")).unwrap_err().to_string();
        assert!(msg.starts_with("/nonexistent/s.csv: "), "{msg}");
    }
}
