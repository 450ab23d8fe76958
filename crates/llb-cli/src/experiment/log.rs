//! The resume log of `llb experiment`: one JSON result row per line, appended as each row
//! finishes, read back to skip finished rows and to assemble the results.
//!
//! Crash safety: a row and its newline go to the file in one `write_all` and are synced before
//! the row counts as done, so a killed run leaves whole lines plus at most one torn last line.
//! Reading ignores a torn last line with a warning (its row is simply run again), and the next
//! append cuts it off first, so the file never glues two rows together. Lines that an older
//! version glued together (`{row}{row}`, a kill between a row and its newline) are read as the
//! rows they hold. Any other malformed line is an error naming the file and line.
//!
//! One run at a time: [`lock_log`] holds an advisory lock on `<log>.lock` for the whole run, so a
//! second `llb experiment` writing to the same folder waits, then reuses the finished rows.

use super::run::ResultRow;
use anyhow::Context;
use llb_types::FileLock;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Takes the log's lock (`<log>.lock`) for this run, waiting (with a log line) while another
/// `llb experiment` holds it.
pub(crate) fn lock_log(path: &Path) -> anyhow::Result<FileLock> {
    let lock_path = lock_path(path);
    FileLock::exclusive_or_wait(&lock_path, || {
        tracing::info!(log = %path.display(), "another llb experiment is writing this log; waiting");
    })
    .with_context(|| format!("locking {}", lock_path.display()))
}

/// Every row of the log at `path`, in file order (empty when there is none).
pub(crate) fn read_rows(path: &Path) -> anyhow::Result<Vec<ResultRow>> {
    read_lines(path)
}

/// Appends one row as a JSON line (one `write_all`) and syncs it, so a killed run keeps every
/// finished row; a torn last line left by an earlier kill is cut off first.
pub(crate) fn append_log(path: &Path, row: &ResultRow) -> anyhow::Result<()> {
    append_line(path, row)
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

fn read_lines<R: DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<R>> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let (whole, torn) = split_torn(&text);
    let mut rows = Vec::new();
    for (n, line) in whole.split(|&b| b == b'\n').enumerate() {
        let values = parse_line(line)
            .with_context(|| format!("{}:{}: not a result row", path.display(), n + 1))?;
        rows.extend(values);
    }
    if !torn.is_empty() {
        match parse_line::<R>(torn) {
            Ok(values) => rows.extend(values),
            Err(e) => tracing::warn!(log = %path.display(), bytes = torn.len(), error = %e,
                "ignoring a torn last line (a killed run); its row runs again"),
        }
    }
    Ok(rows)
}

/// `(whole lines without the final newline, the unterminated tail)`.
fn split_torn(text: &[u8]) -> (&[u8], &[u8]) {
    match text.iter().rposition(|&b| b == b'\n') {
        Some(end) => (&text[..end], &text[end + 1..]),
        None => (&[], text),
    }
}

/// The rows of one line: none for a blank line, several for rows an older version glued.
fn parse_line<R: DeserializeOwned>(line: &[u8]) -> serde_json::Result<Vec<R>> {
    serde_json::Deserializer::from_slice(line).into_iter().collect()
}

fn append_line<R: Serialize + DeserializeOwned>(path: &Path, row: &R) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(row)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let writing = |e| anyhow::Error::new(e).context(format!("writing {}", path.display()));
    let end = repair_tail::<R>(&mut file).map_err(writing)?;
    file.seek(SeekFrom::Start(end)).map_err(writing)?;
    file.write_all(&line).map_err(writing)?;
    file.sync_data().with_context(|| format!("syncing {}", path.display()))
}

/// The logs of manifest `name` in `out`: the whole run's `<name>.rows.jsonl` and every shard's
/// `<name>.shard-I-of-N.rows.jsonl`, sorted by file name (the order in which duplicate keys are
/// resolved: the first row read wins).
pub(crate) fn log_paths(out: &Path, name: &str) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let whole = format!("{name}.rows.jsonl");
    let shard = format!("{name}.shard-");
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", out.display())),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", out.display()))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if file == whole || (file.starts_with(&shard) && file.ends_with(".rows.jsonl")) {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

/// Makes the file end with a whole line and returns its length: a parseable unterminated last
/// line gets its newline, a torn one is cut off.
fn repair_tail<R: DeserializeOwned>(file: &mut std::fs::File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    let mut text = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut text)?;
    let (_, torn) = split_torn(&text);
    let start = (text.len() - torn.len()) as u64;
    if parse_line::<R>(torn).is_ok() {
        file.seek(SeekFrom::Start(len))?;
        file.write_all(b"\n")?;
        Ok(len + 1)
    } else {
        file.set_len(start)?;
        Ok(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// A stand-in row: the log does not depend on the fields of a result row.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Row {
        key: String,
        value: f64,
    }

    fn row(key: &str, value: f64) -> Row {
        Row { key: key.into(), value }
    }

    fn json(r: &Row) -> String {
        serde_json::to_string(r).unwrap()
    }

    fn check(file: &str, expected: &[Row]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.rows.jsonl");
        std::fs::write(&path, file).unwrap();
        assert_eq!(read_lines::<Row>(&path).unwrap(), expected, "{file:?}");
    }

    #[test]
    fn whole_torn_and_glued_lines() {
        let (a, b) = (row("a", 1.0), row("b", 0.5));
        let (ja, jb) = (json(&a), json(&b));
        check("", &[]);
        check(&format!("{ja}\n{jb}\n"), &[row("a", 1.0), row("b", 0.5)]);
        check(&format!("{ja}\n\n{jb}\n"), &[row("a", 1.0), row("b", 0.5)]);
        // Killed mid-row: the torn row is ignored.
        check(&format!("{ja}\n{}", &jb[..jb.len() / 2]), &[row("a", 1.0)]);
        check(&jb[..5], &[]);
        // Killed between a row and its newline: the row is whole and counts.
        check(&format!("{ja}\n{jb}"), &[row("a", 1.0), row("b", 0.5)]);
        // Regression: the old two-write append glued the next row onto an unterminated one.
        check(&format!("{ja}{jb}\n"), &[row("a", 1.0), row("b", 0.5)]);
    }

    #[test]
    fn a_malformed_whole_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.rows.jsonl");
        let ja = json(&row("a", 1.0));
        std::fs::write(&path, format!("{ja}\n{{\"key\": \n{ja}\n")).unwrap();
        let err = format!("{:#}", read_lines::<Row>(&path).unwrap_err());
        assert!(err.contains("x.rows.jsonl:2: not a result row"), "{err}");
    }

    /// Every byte length at which a run can be killed in the middle of an append: the log reads
    /// back, and the next append leaves only whole lines.
    #[test]
    fn appending_after_a_kill_at_any_byte_leaves_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.rows.jsonl");
        let (a, b, c) = (row("a", 1.0), row("b", 2.0), row("c", 3.0));
        let full = format!("{}\n{}\n", json(&a), json(&b));
        let first_len = json(&a).len() + 1;
        for cut in first_len..=full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let before = read_lines::<Row>(&path).unwrap();
            let b_whole = cut >= full.len() - 1;
            assert_eq!(before.len(), 1 + usize::from(b_whole), "cut at {cut}");
            append_line(&path, &c).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.ends_with('\n')
                    && text.lines().all(|l| l.starts_with('{') && l.ends_with('}')),
                "{text:?}"
            );
            let after = read_lines::<Row>(&path).unwrap();
            let expected: Vec<&Row> = if b_whole { vec![&a, &b, &c] } else { vec![&a, &c] };
            assert_eq!(after.iter().collect::<Vec<_>>(), expected, "cut at {cut}");
        }
    }

    #[test]
    fn the_lock_file_sits_beside_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("bench.rows.jsonl");
        let lock = lock_log(&log).unwrap();
        assert_eq!(lock.path(), dir.path().join("bench.rows.jsonl.lock"));
        assert!(FileLock::try_exclusive(lock.path()).unwrap().is_none());
    }

    /// Seeded mutants of a real log (the crate's fuzz harness): no panic, bounded memory.
    #[test]
    fn fuzz_the_log_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.rows.jsonl");
        let corpus = vec![
            format!("{}\n{}\n", json(&row("a", 1.0)), json(&row("b,\"q\"", -0.5))).into_bytes(),
            format!("{}{}\n{}", json(&row("c", 2.0)), json(&row("d", 3.0)), json(&row("e", 4.0)))
                .into_bytes(),
        ];
        let tokens: [&[u8]; 4] = [b"\n", b"}{", b"{\"key\":", b"1e999"];
        llb_types::fuzz::run(
            "experiment log",
            &corpus,
            &tokens,
            1000,
            24,
            |len| 64 * len + 8192,
            |b| {
                std::fs::write(&path, b).unwrap();
                read_lines::<Row>(&path).map(drop)
            },
        )
        .assert_clean();
    }
}
