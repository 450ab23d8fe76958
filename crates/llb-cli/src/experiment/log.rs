//! The resume log of `llb experiment`: one JSON result row per line, appended as each row
//! finishes, read back to skip finished rows and to assemble the results.

use super::run::ResultRow;
use anyhow::Context;
use std::path::Path;

/// Every row of the log at `path`, in file order (empty when there is none).
pub(crate) fn read_rows(path: &Path) -> anyhow::Result<Vec<ResultRow>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a result row", path.display(), n + 1))
        })
        .collect()
}

/// Appends one row as a JSON line and syncs it, so a killed run keeps every finished row.
pub(crate) fn append_log(path: &Path, row: &ResultRow) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{}", serde_json::to_string(row)?)
        .with_context(|| format!("writing {}", path.display()))?;
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
