//! End to end: a real server on a socket, the sandbox EHR on a socket, real SQLite and
//! PostgreSQL, the delivery worker stepped under a manual clock, and the FHIR it writes checked by
//! HL7's schema through `../shared/tools/fhir-validate`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod alerts;
mod analytics;
mod backend_auth;
mod bad_input;
mod break_glass;
mod browser;
mod care_plan;
mod consent;
mod crash;
mod dead_letters;
mod disclosure;
mod drafting;
mod econsent;
mod egress;
mod env;
mod fifth;
mod flow;
mod forged_tokens;
mod inbound;
mod instances;
pub mod launch;
mod llm;
mod logs;
mod merge;
mod natural_key;
mod oidc;
mod openapi;
mod orders;
mod portal;
mod quota;
mod rbac;
mod tls;
mod validator;
mod vendors;
mod webhooks;

pub use env::*;
