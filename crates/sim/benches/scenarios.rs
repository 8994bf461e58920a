//! `cargo bench -p meridian-sim` prints the same table as `sim-bench`.

#[path = "../src/bin/sim-bench.rs"]
mod table;

fn main() {
    table::main();
}
