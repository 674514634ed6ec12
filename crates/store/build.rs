// `sqlx::migrate!` embeds the migration files at compile time; without this a new migration
// would not reach the binary until some Rust source in the crate changed.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
