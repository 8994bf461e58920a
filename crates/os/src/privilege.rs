//! Dropping root after start-up (`ntpd -u user[:group]`), keeping only the capabilities
//! the daemon still needs: CAP_SYS_TIME to discipline the clock, and
//! CAP_NET_BIND_SERVICE so a reload can bind port 123 again.
//!
//! Must run before any thread is started: capability sets are per thread, and threads
//! created afterwards inherit the reduced ones.

use std::collections::HashSet;
use std::ffi::CString;
use std::io;

use caps::{CapSet, Capability};

/// The capabilities kept after dropping root.
pub const KEPT: [Capability; 2] = [Capability::CAP_SYS_TIME, Capability::CAP_NET_BIND_SERVICE];

/// Who the daemon runs as after [`drop_privileges`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The user id now in effect.
    pub uid: u32,
    /// The group id now in effect.
    pub gid: u32,
    /// The capabilities kept (those of [`KEPT`] that were available).
    pub kept: Vec<Capability>,
}

fn lookup_user(name: &str) -> io::Result<(u32, u32)> {
    if let Ok(uid) = name.parse::<u32>() {
        return Ok((uid, uid));
    }
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad user name"))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: passwd is plain data; getpwnam_r writes into `pwd` and `buf` (whose length
    // is passed) and sets `result` to null or &pwd.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no such user: {name}"),
            ));
        }
        Ok((pwd.pw_uid, pwd.pw_gid))
    }
}

fn lookup_group(name: &str) -> io::Result<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad group name"))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: as for getpwnam_r above.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no such group: {name}"),
            ));
        }
        Ok(grp.gr_gid)
    }
}

fn check(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

/// Become `spec` (`user` or `user:group`, names or numbers), keeping only [`KEPT`].
pub fn drop_privileges(spec: &str) -> io::Result<Dropped> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, user_gid) = lookup_user(user)?;
    let gid = group.map(lookup_group).transpose()?.unwrap_or(user_gid);
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(|e| io::Error::other(e.to_string()))?;
    let kept: Vec<Capability> = KEPT
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    // SAFETY: plain system calls on this process; no memory is shared with them except
    // the one-element group list, which outlives the call.
    unsafe {
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
            "prctl(PR_SET_KEEPCAPS)",
        )?;
        let groups = [gid];
        check(libc::setgroups(1, groups.as_ptr()), "setgroups")?;
        check(libc::setgid(gid), "setgid")?;
        check(libc::setuid(uid), "setuid")?;
    }
    let set: HashSet<Capability> = kept.iter().copied().collect();
    let to_io = |e: caps::errors::CapsError| io::Error::other(e.to_string());
    caps::set(None, CapSet::Permitted, &set).map_err(to_io)?;
    caps::set(None, CapSet::Effective, &set).map_err(to_io)?;
    caps::clear(None, CapSet::Inheritable).map_err(to_io)?;
    Ok(Dropped { uid, gid, kept })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups_resolve_by_name_or_number() {
        assert_eq!(lookup_user("root").unwrap(), (0, 0));
        assert_eq!(lookup_user("4321").unwrap(), (4321, 4321));
        assert_eq!(lookup_group("0").unwrap(), 0);
        assert!(lookup_user("no-such-user-meridian").is_err());
        assert!(lookup_group("no-such-group-meridian").is_err());
    }
}
