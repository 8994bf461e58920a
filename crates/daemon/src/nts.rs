//! The NTS server side of the daemon (`nts enable`, `nts cert`, `nts key`, `nts cookie`):
//! the NTS-KE listener that hands out cookies over TLS, and the shared cookie key ring
//! the serving workers open those cookies with.
//!
//! Cookie keys rotate daily and are saved to the `nts cookie` file (atomically) when one
//! is configured, so a restart, or a fleet of servers sharing the file, keeps accepting
//! the cookies already handed out. SIGHUP reloads the certificate.

use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::path::PathBuf;

use meridian_conf::Config;
use meridian_nts::keyfile::{load_or_create_key_file, save_key_file};
use meridian_nts::{KeyRing, NtsKeConfig, NtsKeServer, NtsServer, SharedKeyRing, NTS_KE_PORT};

/// The running NTS service.
pub struct NtsService {
    ring: SharedKeyRing,
    ke: NtsKeServer,
    cookie_file: Option<PathBuf>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl NtsService {
    /// Start NTS-KE if `nts enable` is configured; `ntp_port` is announced to clients
    /// when it is not 123.
    pub fn start(config: &Config, ntp_port: u16) -> Result<Option<NtsService>, String> {
        let nts = &config.nts;
        if !nts.enabled {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&nts.cert, &nts.key) else {
            return Err("nts enable needs 'nts cert FILE' and 'nts key FILE'".into());
        };
        let ring = match &nts.cookie {
            Some(path) => load_or_create_key_file(path, unix_now())
                .map_err(|e| format!("nts cookie {}: {e}", path.display()))?,
            None => KeyRing::generate(unix_now()),
        };
        let ring = SharedKeyRing::new(ring);
        let mut ke_config = NtsKeConfig::new(cert, key);
        if ntp_port != 123 {
            ke_config.ntp.port = Some(ntp_port);
        }
        let ke = NtsKeServer::new(ke_config, ring.clone()).map_err(|e| format!("NTS-KE: {e}"))?;
        let ke_port = nts.port.unwrap_or(NTS_KE_PORT);
        let addr = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), ke_port);
        let listener = TcpListener::bind(addr)
            .or_else(|_| TcpListener::bind(SocketAddr::new([0, 0, 0, 0].into(), ke_port)))
            .map_err(|e| format!("NTS-KE: cannot listen on port {ke_port}: {e}"))?;
        ke.spawn(listener).map_err(|e| format!("NTS-KE: {e}"))?;
        tracing::info!("NTS-KE listening on port {ke_port}");
        Ok(Some(NtsService {
            ring,
            ke,
            cookie_file: nts.cookie.clone(),
        }))
    }

    /// The NTP-side handler for the serving workers.
    pub fn server(&self) -> NtsServer {
        NtsServer::new(self.ring.clone())
    }

    /// Rotate the cookie key when due, saving the ring for restarts and peers.
    pub fn tick(&self) {
        if let Some(ring) = self.ring.rotate_if_due(unix_now()) {
            tracing::info!("NTS cookie key rotated");
            if let Some(path) = &self.cookie_file {
                if let Err(e) = save_key_file(path, &ring) {
                    tracing::error!("cannot save NTS cookie keys to {}: {e}", path.display());
                }
            }
        }
    }

    /// Re-read the certificate and key (SIGHUP).
    pub fn reload(&self) {
        match self.ke.reload() {
            Ok(()) => tracing::info!("NTS certificate reloaded"),
            Err(e) => tracing::error!("NTS certificate reload failed, keeping the old one: {e}"),
        }
    }
}
