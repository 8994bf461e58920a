//! rustls configuration for NTS-KE: TLS 1.3 only (RFC 8915 §3), ALPN
//! `ntske/1`, the `ring` provider, certificates and keys from PEM files,
//! and the client's trust anchors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::error::KeError;

/// The ALPN protocol id of NTS-KE.
pub const ALPN_NTSKE: &[u8] = b"ntske/1";

/// Default NTS-KE TCP port.
pub const NTS_KE_PORT: u16 = 4460;

/// Where the system's CA bundle lives on Debian-like systems, used by
/// [`TrustAnchors::System`].
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_err(path: &Path, what: &str, e: impl std::fmt::Display) -> KeError {
    KeError::Config(format!("{}: {what}: {e}", path.display()))
}

/// Reads every certificate in a PEM file (a chain: leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, KeError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| config_err(path, "cannot read certificates", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_err(path, "bad PEM", e))?;
    if certs.is_empty() {
        return Err(config_err(path, "no certificate", "empty file"));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, KeError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| config_err(path, "cannot read private key", e))
}

/// Builds the NTS-KE server's TLS configuration from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, KeError> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![ALPN_NTSKE.to_vec()];
    // NTS-KE is one request per connection: no resumption state to keep.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// How the NTS-KE client authenticates the server.
#[derive(Clone, Debug)]
pub enum TrustAnchors {
    /// The system CA bundle ([`SYSTEM_CA_BUNDLE`]).
    System,
    /// CA certificates from a PEM file (NTPsec `ca`, chrony
    /// `ntstrustedcerts`).
    CaFile(PathBuf),
    /// A prepared root store.
    Roots(Arc<RootCertStore>),
    /// No certificate verification (NTPsec `noval`): only for testing, as
    /// it gives up all protection against a man in the middle. The TLS
    /// handshake signature is still checked.
    NoVerification,
}

impl TrustAnchors {
    /// Maps NTPsec-style options: `noval` wins, then `ca`, else the system
    /// bundle.
    pub fn from_options(ca: Option<&Path>, noval: bool) -> Self {
        match (noval, ca) {
            (true, _) => TrustAnchors::NoVerification,
            (false, Some(p)) => TrustAnchors::CaFile(p.to_path_buf()),
            (false, None) => TrustAnchors::System,
        }
    }
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, KeError> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(load_certs(path)?);
    if added == 0 {
        return Err(config_err(path, "no usable CA certificate", "all rejected"));
    }
    Ok(roots)
}

/// Builds the NTS-KE client's TLS configuration.
pub fn client_config(trust: &TrustAnchors) -> Result<Arc<ClientConfig>, KeError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut cfg = match trust {
        TrustAnchors::System => builder
            .with_root_certificates(roots_from_file(Path::new(SYSTEM_CA_BUNDLE))?)
            .with_no_client_auth(),
        TrustAnchors::CaFile(p) => builder
            .with_root_certificates(roots_from_file(p)?)
            .with_no_client_auth(),
        TrustAnchors::Roots(r) => builder
            .with_root_certificates(r.clone())
            .with_no_client_auth(),
        TrustAnchors::NoVerification => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertVerification(provider())))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![ALPN_NTSKE.to_vec()];
    Ok(Arc::new(cfg))
}

/// Parses a server name for SNI and certificate checks (DNS name or IP
/// literal).
pub fn server_name(name: &str) -> Result<ServerName<'static>, KeError> {
    ServerName::try_from(name.to_string())
        .map_err(|e| KeError::Config(format!("bad server name {name:?}: {e}")))
}

/// Accepts any certificate but still checks the handshake signature.
#[derive(Debug)]
struct NoCertVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCertVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
