//! Loading the rules a process runs under: a rules file named by `TALLY_RULES` (or `--rules`),
//! else the university rules compiled into tally. The Lambda loads them once at init and fails
//! init if they do not load; the CLI loads them before any command runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aggregates::rules::{Position, Problem, RuleError, RulesErrors};
use aggregates::Rules;

/// The environment variable naming the rules file.
pub const RULES_ENV: &str = "TALLY_RULES";

/// Why the rules did not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read at all (missing, a directory, no permission).
    #[error("{}: cannot read: {problem}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read, as the system said.
        problem: String,
    },
    /// The file was read but does not load: every problem, at its line and column.
    #[error("{0}")]
    Invalid(RulesErrors),
}

/// Reads and compiles the rules file at `path`; errors name it as `source_name`.
///
/// # Errors
/// [`LoadError::Read`] if the file cannot be read; [`LoadError::Invalid`] with every problem
/// otherwise, text that is not UTF-8 included (at the first bad byte).
pub fn load(path: &Path, source_name: &str) -> Result<Rules, LoadError> {
    let bytes = std::fs::read(path).map_err(|err| LoadError::Read { path: path.to_owned(), problem: err.to_string() })?;
    let invalid = |position: Position, problem: String| {
        LoadError::Invalid(RulesErrors {
            source_name: source_name.to_owned(),
            errors: vec![RuleError { position, problem: Problem::Toml(problem) }],
        })
    };
    // A byte order mark is not part of line 1.
    let bytes = text_bytes(&bytes).map_err(|problem| invalid(Position { line: 1, column: 1 }, problem))?;
    let text = std::str::from_utf8(bytes).map_err(|err| {
        let valid = std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or_default();
        let line_start = valid.rfind('\n').map_or(0, |newline| newline + 1);
        let position = Position { line: valid.matches('\n').count() + 1, column: valid[line_start..].chars().count() + 1 };
        invalid(position, "not UTF-8 text: a rules file is TOML".to_owned())
    })?;
    Rules::from_toml(text, source_name).map_err(LoadError::Invalid)
}

/// The rules a process runs under: those at `path`, else the university's, shared by what the
/// process builds on them (its engine, its store).
///
/// # Errors
/// As [`load`].
pub fn load_for_process(path: Option<&Path>) -> Result<Arc<Rules>, LoadError> {
    match path {
        None => Ok(Arc::new(Rules::university().clone())),
        Some(path) => Ok(Arc::new(load(path, &path.display().to_string())?)),
    }
}

/// A file's bytes as its text: without the byte order mark that editors on Windows put before
/// UTF-8 (JSON and TOML have none); UTF-16 is refused, with what to do instead.
pub fn text_bytes(bytes: &[u8]) -> Result<&[u8], String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Err("the file is UTF-16: save it as UTF-8".to_owned());
    }
    Ok(bytes)
}
