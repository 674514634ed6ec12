//! telechart-sync
