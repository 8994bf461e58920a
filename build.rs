//! Link the `meridian` binary with the functions a running daemon executes packed together
//! (link/symbol-order.txt, written by scripts/symbol-order.sh), so that its resident code
//! is the working set rather than most of .text: see that script for why.
//!
//! Only for release builds with rustc's own lld, the default linker of
//! x86_64-unknown-linux-gnu since Rust 1.90: other linkers do not take the option. Set
//! `MERIDIAN_SYMBOL_ORDER=0` to link without it.

use std::env;
use std::path::Path;
use std::process::Command;

const ORDER: &str = "link/symbol-order.txt";

fn main() {
    println!("cargo:rerun-if-changed={ORDER}");
    println!("cargo:rerun-if-env-changed=MERIDIAN_SYMBOL_ORDER");
    if env::var("MERIDIAN_SYMBOL_ORDER").as_deref() == Ok("0") {
        return;
    }
    let var = |name: &str| env::var(name).unwrap_or_default();
    let target_is_default_lld = var("TARGET") == "x86_64-unknown-linux-gnu"
        // Any linker flag (`-C linker=…`, `linker-flavor`, `link-arg=-fuse-ld=…`) may
        // mean another linker: then leave the link alone.
        && !var("CARGO_ENCODED_RUSTFLAGS").contains("link")
        && env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_none();
    if var("PROFILE") != "release" || !target_is_default_lld || !rustc_links_with_lld() {
        return;
    }
    // Relative relocations packed (DT_RELR, glibc 2.36+): the loader reads a few KiB at
    // start-up instead of ~90 KiB of RELA entries, which then stay resident.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join(ORDER);
    if order.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names of functions that changed since the profile are skipped, not errors.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether this rustc is 1.90 or later, whose x86_64 Linux target links with lld.
fn rustc_links_with_lld() -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-V").output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let mut numbers = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
