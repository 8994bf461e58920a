//! Process-wide memory settings.

/// Make every thread allocate from glibc's one main arena.
///
/// glibc gives each thread that calls `malloc` an arena of its own (up to 8 per CPU),
/// each starting with some 130 KiB of resident heap. The daemon's threads allocate at
/// start-up and on reloads, not per packet (the serving path is allocation-free), so
/// arenas buy no speed and only add resident memory per thread. Call before starting
/// threads. Elsewhere than glibc this does nothing.
pub fn single_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; M_ARENA_MAX with a positive
    // value is a documented, always-valid setting.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
