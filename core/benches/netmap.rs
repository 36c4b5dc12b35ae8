//! Network-map benchmarks (being written).
fn main() {}
