//! python binding of meshplane-core (being written).
