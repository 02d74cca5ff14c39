//! Re-embeds the migrations when a file in `migrations/` changes.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
