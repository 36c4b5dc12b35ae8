//! wasm binding of meshplane-core (being written).
