//! `ntpd --seccomp`: a system-call filter installed after start-up.
//!
//! A time daemon never needs to start programs, trace other processes, load kernel
//! modules, mount file systems or enter namespaces, so once it runs those calls fail with
//! EPERM. Code execution gained through a bug could then not, for example, start a shell.
//! The filter is a deny list of calls the daemon never makes, rather than an allow list
//! of the ones it does: a forgotten rare call (a reload, a TLS handshake, a statistics
//! file) must never kill a running time server. It also sets no_new_privs.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{apply_filter, BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// The calls refused once the filter is installed.
pub const DENIED: &[(&str, libc::c_long)] = &[
    ("execve", libc::SYS_execve),
    ("execveat", libc::SYS_execveat),
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
];

/// Install the filter on the calling thread (and the threads it starts afterwards).
pub fn install() -> io::Result<()> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| io::Error::new(io::ErrorKind::Unsupported, format!("seccomp: {e:?}")))?;
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        DENIED.iter().map(|(_, nr)| (*nr, Vec::new())).collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| io::Error::other(format!("seccomp filter: {e}")))?;
    let program: BpfProgram = filter.try_into().map_err(|e: seccompiler::BackendError| {
        io::Error::other(format!("seccomp program: {e}"))
    })?;
    apply_filter(&program).map_err(|e| io::Error::other(format!("seccomp: {e}")))
}
