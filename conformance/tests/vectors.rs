//! Runs every conformance vector and prints the count, the figure the
//! bindings' runners must match.

use meshplane_conformance::{run_dir, vectors_dir};

#[test]
fn every_vector_passes() {
    let report = run_dir(&vectors_dir()).expect("vectors load");
    println!("{}", report.summarise());
    assert!(
        report.failures.is_empty(),
        "{} vectors failed",
        report.failures.len()
    );
    assert!(report.passed > 0, "no vectors found");
}

#[test]
fn every_op_has_vectors() {
    let report = run_dir(&vectors_dir()).expect("vectors load");
    let missing: Vec<_> = meshplane_core::api::ops()
        .into_iter()
        .filter(|op| !report.ops_covered.contains(*op))
        .collect();
    assert!(missing.is_empty(), "ops without a vector: {missing:?}");
}
