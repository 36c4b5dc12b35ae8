//! Loads the conformance vectors (`conformance/vectors/<area>/*.json`) and
//! runs them against `meshplane_core::api`.
//!
//! A vector file is `{"area": ..., "description": ..., "cases": [...]}`; each
//! case has a stable `id`, an `op`, an `input`, and either `expect` (the exact
//! `ok` value) or `error` (`code` and exact `message`). `schema.json` beside
//! the vectors is the JSON Schema of a file. The files are the contract: the
//! Python, Node and wasm runners load the same files and must report the same
//! counts.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// One vector file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorFile {
    pub area: String,
    pub description: String,
    pub cases: Vec<Case>,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    pub op: String,
    pub input: Value,
    #[serde(default)]
    pub expect: Option<Value>,
    #[serde(default)]
    pub error: Option<ExpectedError>,
}

/// The error a case expects.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExpectedError {
    pub code: String,
    pub message: String,
}

/// Why a case failed.
#[derive(Debug)]
pub struct Failure {
    pub file: PathBuf,
    pub id: String,
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]: {}", self.id, self.file.display(), self.reason)
    }
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    pub failures: Vec<Failure>,
    /// Ops that at least one case exercises.
    pub ops_covered: BTreeSet<String>,
}

impl Report {
    /// Prints every failure to stderr and returns the closing line,
    /// `conformance: N passed, M failed`, that runners are compared on.
    pub fn summarise(&self) -> String {
        for f in &self.failures {
            eprintln!("FAIL {f}");
        }
        format!(
            "conformance: {} passed, {} failed",
            self.passed,
            self.failures.len()
        )
    }
}

/// The vectors directory of this crate.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// Every `*.json` file under `dir` except the schema, sorted by path.
pub fn vector_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json")
                && path.file_name().is_some_and(|n| n != "schema.json")
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Loads and runs every vector under `dir`.
pub fn run_dir(dir: &Path) -> Result<Report, String> {
    let mut report = Report::default();
    let mut ids = BTreeSet::new();
    let files = vector_files(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for file in files {
        let text = fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let parsed: VectorFile = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a vector file: {e}", file.display()))?;
        for case in parsed.cases {
            if !ids.insert(case.id.clone()) {
                return Err(format!(
                    "duplicate case id {} in {}",
                    case.id,
                    file.display()
                ));
            }
            report.ops_covered.insert(case.op.clone());
            match run_case(&case) {
                Ok(()) => report.passed += 1,
                Err(reason) => report.failures.push(Failure {
                    file: file.clone(),
                    id: case.id,
                    reason,
                }),
            }
        }
    }
    Ok(report)
}

/// Runs one case; `Err` says how the answer differed.
pub fn run_case(case: &Case) -> Result<(), String> {
    let answer = meshplane_core::api::call_value(&case.op, case.input.clone());
    match (&case.expect, &case.error, answer) {
        (Some(_), Some(_), _) | (None, None, _) => {
            Err("a case needs exactly one of `expect` and `error`".to_string())
        }
        (Some(want), None, Ok(got)) if *want == got => Ok(()),
        (Some(want), None, Ok(got)) => Err(format!("expected {want}\n      got {got}")),
        (Some(_), None, Err(e)) => Err(format!(
            "expected success, got error {}: {}",
            e.code, e.message
        )),
        (None, Some(want), Err(e)) if want.code == e.code && want.message == e.message => Ok(()),
        (None, Some(want), Err(e)) => Err(format!(
            "expected error {}: {}\n      got error {}: {}",
            want.code, want.message, e.code, e.message
        )),
        (None, Some(want), Ok(got)) => {
            Err(format!("expected error {}, got success {got}", want.code))
        }
    }
}
