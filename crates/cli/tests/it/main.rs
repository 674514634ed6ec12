//! The `telechart` binary as users run it, and the architecture's rules as tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod tidy;
