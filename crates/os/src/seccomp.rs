//! `ntpd --seccomp`: a system-call allow-list installed once start-up is done.
//!
//! After start-up the daemon only serves and polls over UDP, runs NTS-KE and the
//! metrics page over TCP, writes statistics and drift files, logs, and on SIGHUP
//! re-reads its files and re-resolves names. [`ALLOWED`] and the argument-checked calls
//! ([`SOCKET_FAMILIES`], [`IOCTLS`], [`PRCTLS`], `tgkill` to itself) are what that
//! needs: measured with `strace -f` on a daemon using every feature (the run
//! `tests/seccomp.rs` repeats under the filter) and on DNS lookups through a resolver,
//! plus the spellings other glibc versions use for the same work. Everything else —
//! exec, ptrace, mount, modules, namespaces, raw or packet sockets, BPF, keyrings,
//! signals to other processes, privilege and dumpability changes — is refused.
//!
//! A refused call fails with EPERM rather than killing the process: a rare path missed
//! here (an exotic NSS module on reload, say) then shows up as a logged error while the
//! time service keeps running, which is what an administrator of a time server wants;
//! code run through a bug gains nothing either way, as the call still does not happen.
//! The filter is installed with `SECCOMP_FILTER_FLAG_LOG`, so the kernel also records
//! every refusal (audit type 1326, `syscall=N`; in the kernel log when no audit daemon
//! runs): a missing entry is found from the logs, not by guessing. It also sets
//! no_new_privs, and applies to every thread (TSYNC), present and future.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// What a call outside the list gets.
pub const REFUSED_ERRNO: i32 = libc::EPERM;

/// Calls allowed with any arguments (beyond these: `socket`, `ioctl`, `prctl` and
/// `tgkill`, whose arguments are checked).
pub const ALLOWED: &[(&str, libc::c_long)] = &[
    // Memory (allocator, thread stacks, NSS modules loaded on a reload's name lookup).
    ("brk", libc::SYS_brk),
    ("mmap", libc::SYS_mmap),
    ("munmap", libc::SYS_munmap),
    ("mremap", libc::SYS_mremap),
    ("mprotect", libc::SYS_mprotect),
    ("madvise", libc::SYS_madvise),
    // Threads: NTS-KE and metrics handlers and the client sockets' readers start threads
    // after start-up. A fork would still be inside this filter, and exec is refused.
    ("clone", libc::SYS_clone),
    ("clone3", libc::SYS_clone3),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("set_tid_address", libc::SYS_set_tid_address),
    ("rseq", libc::SYS_rseq),
    ("futex", libc::SYS_futex),
    ("sched_getaffinity", libc::SYS_sched_getaffinity),
    ("sched_yield", libc::SYS_sched_yield),
    ("getcpu", libc::SYS_getcpu),
    ("gettid", libc::SYS_gettid),
    ("getpid", libc::SYS_getpid),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
    // Signals (SIGHUP, SIGTERM, the handlers' alternate stacks).
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("restart_syscall", libc::SYS_restart_syscall),
    // Time: reading the clocks (when the vDSO can't), sleeping, and disciplining the
    // kernel clock (`clock_adjtime` covers slewing, stepping and the leap flags).
    ("clock_gettime", libc::SYS_clock_gettime),
    ("clock_getres", libc::SYS_clock_getres),
    ("gettimeofday", libc::SYS_gettimeofday),
    ("clock_nanosleep", libc::SYS_clock_nanosleep),
    ("nanosleep", libc::SYS_nanosleep),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("getrandom", libc::SYS_getrandom),
    // Files: configuration, keys, certificates and leap file on reload; statistics files
    // and their day links; drift and cookie files written atomically (temp, fsync,
    // rename); the log file; /etc/hosts, resolv.conf, nsswitch.conf, gai.conf.
    ("openat", libc::SYS_openat),
    ("read", libc::SYS_read),
    ("readv", libc::SYS_readv),
    ("pread64", libc::SYS_pread64),
    ("write", libc::SYS_write),
    ("writev", libc::SYS_writev),
    ("close", libc::SYS_close),
    ("lseek", libc::SYS_lseek),
    ("fstat", libc::SYS_fstat),
    ("newfstatat", libc::SYS_newfstatat),
    ("statx", libc::SYS_statx),
    ("faccessat", libc::SYS_faccessat),
    ("faccessat2", libc::SYS_faccessat2),
    ("fcntl", libc::SYS_fcntl),
    ("getdents64", libc::SYS_getdents64),
    ("readlinkat", libc::SYS_readlinkat),
    ("fsync", libc::SYS_fsync),
    ("fdatasync", libc::SYS_fdatasync),
    ("renameat2", libc::SYS_renameat2),
    ("unlinkat", libc::SYS_unlinkat),
    ("symlinkat", libc::SYS_symlinkat),
    // Sockets: NTP (batched, with kernel timestamps), NTS-KE and metrics over TCP,
    // mode 6, syslog and sd_notify over unix sockets, DNS over UDP and TCP.
    ("bind", libc::SYS_bind),
    ("listen", libc::SYS_listen),
    ("accept", libc::SYS_accept),
    ("accept4", libc::SYS_accept4),
    ("connect", libc::SYS_connect),
    ("shutdown", libc::SYS_shutdown),
    ("getsockname", libc::SYS_getsockname),
    ("getpeername", libc::SYS_getpeername),
    ("setsockopt", libc::SYS_setsockopt),
    ("getsockopt", libc::SYS_getsockopt),
    ("sendto", libc::SYS_sendto),
    ("recvfrom", libc::SYS_recvfrom),
    ("sendmsg", libc::SYS_sendmsg),
    ("recvmsg", libc::SYS_recvmsg),
    ("sendmmsg", libc::SYS_sendmmsg),
    ("recvmmsg", libc::SYS_recvmmsg),
    ("ppoll", libc::SYS_ppoll),
    // Read-only process facts glibc and std ask for (uname for mode 6's `system`,
    // sysinfo from qsort in getaddrinfo, rlimits for thread stacks).
    ("uname", libc::SYS_uname),
    ("sysinfo", libc::SYS_sysinfo),
    ("prlimit64", libc::SYS_prlimit64),
    ("getuid", libc::SYS_getuid),
    ("geteuid", libc::SYS_geteuid),
    ("getgid", libc::SYS_getgid),
    ("getegid", libc::SYS_getegid),
    // The x86-64 spellings of the calls above that glibc still uses there (aarch64 has
    // only the *at forms and renameat2).
    #[cfg(target_arch = "x86_64")]
    ("open", libc::SYS_open),
    #[cfg(target_arch = "x86_64")]
    ("stat", libc::SYS_stat),
    #[cfg(target_arch = "x86_64")]
    ("lstat", libc::SYS_lstat),
    #[cfg(target_arch = "x86_64")]
    ("access", libc::SYS_access),
    #[cfg(target_arch = "x86_64")]
    ("poll", libc::SYS_poll),
    #[cfg(target_arch = "x86_64")]
    ("readlink", libc::SYS_readlink),
    #[cfg(target_arch = "x86_64")]
    ("rename", libc::SYS_rename),
    #[cfg(target_arch = "x86_64")]
    ("renameat", libc::SYS_renameat),
    #[cfg(target_arch = "x86_64")]
    ("unlink", libc::SYS_unlink),
    #[cfg(target_arch = "x86_64")]
    ("symlink", libc::SYS_symlink),
    #[cfg(target_arch = "x86_64")]
    ("getdents", libc::SYS_getdents),
    #[cfg(target_arch = "x86_64")]
    ("time", libc::SYS_time),
];

/// Socket families `socket` may create: IP for NTP, NTS-KE, metrics and DNS; unix for
/// syslog, sd_notify and nscd; netlink for glibc's address sorting in getaddrinfo. No
/// packet or raw sockets. (The systemd unit's `RestrictAddressFamilies` is the same.)
pub const SOCKET_FAMILIES: &[(&str, libc::c_int)] = &[
    ("AF_UNIX", libc::AF_UNIX),
    ("AF_INET", libc::AF_INET),
    ("AF_INET6", libc::AF_INET6),
    ("AF_NETLINK", libc::AF_NETLINK),
];

/// `ioctl` requests allowed: non-blocking mode and close-on-exec (std), bytes waiting
/// (glibc's resolver), the terminal check (logging), and interface index ↔ name for
/// IPv6 link-local scope ids in a lookup. No device or network configuration ioctls.
pub const IOCTLS: &[(&str, libc::Ioctl)] = &[
    ("FIONBIO", libc::FIONBIO),
    ("FIONREAD", libc::FIONREAD),
    ("FIOCLEX", libc::FIOCLEX),
    ("FIONCLEX", libc::FIONCLEX),
    ("TCGETS", libc::TCGETS),
    ("SIOCGIFINDEX", libc::SIOCGIFINDEX),
    ("SIOCGIFNAME", libc::SIOCGIFNAME),
];

/// `prctl` options allowed: thread names (std names its threads), and naming anonymous
/// mappings (newer glibc labels its allocations). Nothing that changes privileges,
/// dumpability or the memory map.
pub const PRCTLS: &[(&str, libc::c_int)] = &[
    ("PR_SET_NAME", libc::PR_SET_NAME),
    ("PR_GET_NAME", libc::PR_GET_NAME),
    ("PR_SET_VMA", libc::PR_SET_VMA),
];

/// Calls a time daemon never makes, which must never appear in [`ALLOWED`] (checked by
/// a test): they are what code run through a bug would want first.
pub const NEVER: &[(&str, libc::c_long)] = &[
    ("execve", libc::SYS_execve),
    ("execveat", libc::SYS_execveat),
    ("fork", fork_nr()),
    ("kill", libc::SYS_kill),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("kexec_load", libc::SYS_kexec_load),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("setns", libc::SYS_setns),
    ("unshare", libc::SYS_unshare),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("personality", libc::SYS_personality),
    ("acct", libc::SYS_acct),
    ("setuid", libc::SYS_setuid),
    ("setgid", libc::SYS_setgid),
    ("capset", libc::SYS_capset),
    ("chmod", chmod_nr()),
    ("fchmodat", libc::SYS_fchmodat),
    ("fchownat", libc::SYS_fchownat),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
];

/// `fork` where it exists (aarch64 only has `clone`); an impossible number elsewhere.
const fn fork_nr() -> libc::c_long {
    #[cfg(target_arch = "x86_64")]
    return libc::SYS_fork;
    #[cfg(not(target_arch = "x86_64"))]
    return -1;
}

/// `chmod` where it exists (aarch64 only has `fchmodat`); an impossible number elsewhere.
const fn chmod_nr() -> libc::c_long {
    #[cfg(target_arch = "x86_64")]
    return libc::SYS_chmod;
    #[cfg(not(target_arch = "x86_64"))]
    return -1;
}

fn rule_error(e: seccompiler::BackendError) -> io::Error {
    io::Error::other(format!("seccomp rule: {e}"))
}

/// One rule per allowed value of argument `arg` (the rules of a call are alternatives).
fn one_of(arg: u8, values: impl Iterator<Item = impl Into<u64>>) -> io::Result<Vec<SeccompRule>> {
    values
        .map(|v| {
            let c = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, v.into())
                .map_err(rule_error)?;
            SeccompRule::new(vec![c]).map_err(rule_error)
        })
        .collect()
}

/// The filter for a process whose id is `pid` (signals may only go to its own threads).
pub fn program(pid: u32) -> io::Result<BpfProgram> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| io::Error::new(io::ErrorKind::Unsupported, format!("seccomp: {e:?}")))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|(_, nr)| (*nr, Vec::new())).collect();
    rules.insert(
        libc::SYS_socket,
        one_of(0, SOCKET_FAMILIES.iter().map(|(_, f)| *f as u64))?,
    );
    rules.insert(libc::SYS_ioctl, one_of(1, IOCTLS.iter().map(|(_, r)| *r))?);
    rules.insert(
        libc::SYS_prctl,
        one_of(0, PRCTLS.iter().map(|(_, o)| *o as u64))?,
    );
    // abort() raises SIGABRT with tgkill(own pid, own tid, ...).
    rules.insert(
        libc::SYS_tgkill,
        one_of(0, std::iter::once(u64::from(pid)))?,
    );
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(REFUSED_ERRNO as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| io::Error::other(format!("seccomp filter: {e}")))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| io::Error::other(format!("seccomp program: {e}")))
}

/// Install the allow-list on every thread of this process, and on the threads it
/// starts afterwards.
pub fn install() -> io::Result<()> {
    KernelProgram::new(&program(std::process::id())?)?.load()
}

/// A compiled filter in the kernel's layout, ready to load.
pub struct KernelProgram(Vec<libc::sock_filter>);

impl KernelProgram {
    /// Convert `program` (this allocates: do it before a fork).
    pub fn new(program: &[seccompiler::sock_filter]) -> io::Result<KernelProgram> {
        if program.len() > usize::from(u16::MAX) {
            return Err(io::Error::other("seccomp program too long"));
        }
        Ok(KernelProgram(
            program
                .iter()
                .map(|i| libc::sock_filter {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
                .collect(),
        ))
    }

    /// Set no_new_privs and load the filter for all threads, asking the kernel to log
    /// what it refuses (without the log flag on kernels before 4.14, which lack it).
    ///
    /// Only async-signal-safe calls happen here (no allocation unless it fails), so a
    /// test may load it in a forked child.
    pub fn load(&mut self) -> io::Result<()> {
        let fprog = libc::sock_fprog {
            // Checked in `new`.
            len: self.0.len() as u16,
            filter: self.0.as_mut_ptr(),
        };
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut flags = libc::SECCOMP_FILTER_FLAG_TSYNC | libc::SECCOMP_FILTER_FLAG_LOG;
        loop {
            // SAFETY: `fprog` points at our instructions, which outlive the call; the
            // kernel copies the program and keeps no pointer to it.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    flags,
                    &fprog as *const libc::sock_fprog,
                )
            };
            match rc {
                0 => return Ok(()),
                // TSYNC: the id of a thread that could not take the filter.
                tid if tid > 0 => {
                    return Err(io::Error::other(format!(
                        "seccomp: thread {tid} could not take the filter"
                    )))
                }
                _ => {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::EINVAL)
                        && flags & libc::SECCOMP_FILTER_FLAG_LOG != 0
                    {
                        flags &= !libc::SECCOMP_FILTER_FLAG_LOG;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_allowed_calls_are_not_in_the_list() {
        for (name, nr) in NEVER {
            assert!(
                !ALLOWED.iter().any(|(_, a)| a == nr),
                "{name} must not be allowed"
            );
            assert!(
                ![
                    libc::SYS_socket,
                    libc::SYS_ioctl,
                    libc::SYS_prctl,
                    libc::SYS_tgkill
                ]
                .contains(nr),
                "{name}"
            );
        }
    }

    #[test]
    fn the_list_has_no_duplicates_and_compiles() {
        let mut nrs: Vec<_> = ALLOWED.iter().map(|(_, nr)| *nr).collect();
        nrs.sort_unstable();
        let before = nrs.len();
        nrs.dedup();
        assert_eq!(nrs.len(), before, "a call listed twice");
        assert!(program(1234).unwrap().len() > ALLOWED.len());
    }
}
