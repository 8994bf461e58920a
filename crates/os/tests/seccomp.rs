//! The `--seccomp` allow-list, loaded for real in a forked child: what a time daemon
//! needs still works, and what an attacker would want fails with EPERM.
//!
//! The child only makes raw system calls (no allocation, no locks) between the fork and
//! `_exit`, and reports through its exit status: 0, or the number of the first check
//! that failed. Needs no privileges (no_new_privs makes the filter loadable by anyone),
//! and nothing here could change anything outside the child even without the filter:
//! execve would run /bin/true, unshare would only affect the child, kill only probes
//! with signal 0, the prctls only name or mark the child.

use meridian_os::seccomp::{program, KernelProgram, REFUSED_ERRNO};

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Runs in the child after the filter is loaded; returns the first failed check.
fn checks(parent: libc::pid_t) -> i32 {
    // SAFETY (whole function): raw calls with valid, live arguments; their results are
    // only inspected.
    unsafe {
        let refused = |rc: libc::c_long| rc == -1 && errno() == REFUSED_ERRNO;
        // 1. exec: the first thing a shellcode wants.
        let path = c"/bin/true".as_ptr();
        let argv = [path, std::ptr::null()];
        let envp = [std::ptr::null::<libc::c_char>()];
        if !refused(libc::execve(path, argv.as_ptr(), envp.as_ptr()) as libc::c_long) {
            return 1;
        }
        // 2. signals to another process.
        if !refused(libc::kill(parent, 0) as libc::c_long) {
            return 2;
        }
        // 3. namespaces.
        if !refused(libc::unshare(libc::CLONE_NEWNS) as libc::c_long) {
            return 3;
        }
        // 4. packet sockets are refused, UDP sockets allowed.
        if !refused(libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) as libc::c_long) {
            return 4;
        }
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            return 5;
        }
        // 6. the ioctl std uses for non-blocking mode works; interface configuration not.
        let mut on: libc::c_int = 1;
        if libc::ioctl(fd, libc::FIONBIO, &mut on) != 0 {
            return 6;
        }
        let mut ifr = [0u8; 40];
        if !refused(libc::ioctl(fd, libc::SIOCSIFFLAGS, ifr.as_mut_ptr()) as libc::c_long) {
            return 7;
        }
        // 8. the rest of a time server's day: clocks, sleeping, randomness, files.
        let mut ts = std::mem::zeroed::<libc::timespec>();
        if libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, &mut ts) != 0 {
            return 8;
        }
        let mut buf = [0u8; 16];
        if libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) != 16 {
            return 9;
        }
        let file = libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY);
        if file < 0 || libc::read(file, buf.as_mut_ptr().cast(), buf.len()) <= 0 {
            return 10;
        }
        libc::close(file);
        libc::close(fd);
        // 11. ptrace and module loading.
        if !refused(libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0)) {
            return 11;
        }
        if !refused(libc::syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0)) {
            return 12;
        }
        // 13. thread names may change; dumpability may not.
        if libc::prctl(libc::PR_SET_NAME, c"filtered".as_ptr()) != 0 {
            return 13;
        }
        if !refused(libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) as libc::c_long) {
            return 14;
        }
        0
    }
}

#[test]
fn the_allow_list_refuses_what_a_daemon_never_does_and_allows_what_it_does() {
    // SAFETY: getpid cannot fail.
    let parent = unsafe { libc::getpid() };
    // Everything that allocates happens before the fork.
    let mut filter = KernelProgram::new(&program(0).expect("compile")).expect("convert");
    // SAFETY: the child makes only raw system calls and leaves with _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
    if child == 0 {
        let code = match filter.load() {
            Ok(()) => checks(parent),
            Err(_) => 100,
        };
        // SAFETY: leaving the forked child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let rc = unsafe { libc::waitpid(child, &mut status, 0) };
    assert_eq!(rc, child);
    assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
    let code = libc::WEXITSTATUS(status);
    assert_eq!(
        code, 0,
        "check {code} failed (100: the filter did not load)"
    );
}
