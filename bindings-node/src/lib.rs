//! node binding of meshplane-core (being written).
