//! telechart-store
