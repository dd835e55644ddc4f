// The lessons are embedded with include_dir!, which on stable Rust does not
// notice new or changed files by itself: ask cargo to rebuild when lessons/ changes.
fn main() {
    println!("cargo:rerun-if-changed=lessons");
}
