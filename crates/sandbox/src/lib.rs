//! telechart-sandbox
