//! telechart-ehr
