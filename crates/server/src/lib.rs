//! telechart-server
