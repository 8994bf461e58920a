//! Certificates for tests and small deployments: a private CA and a server
//! certificate it signs, written as PEM files. This is what a
//! `meridian nts-certs DIR NAME...` subcommand should call; real
//! deployments would normally use certificates from their own PKI.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::error::KeError;

/// Where [`generate_test_ca_and_server_cert`] wrote its files.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CertPaths {
    /// The CA certificate: give it to clients (`ntstrustedcerts`, `ca`).
    pub ca_cert: PathBuf,
    /// The CA's private key (to sign more server certificates later).
    pub ca_key: PathBuf,
    /// The server certificate chain: leaf, then the CA.
    pub server_cert: PathBuf,
    /// The server's private key (mode 0600).
    pub server_key: PathBuf,
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), KeError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

fn rc(e: rcgen::Error) -> KeError {
    KeError::Config(format!("certificate generation: {e}"))
}

/// Creates `dir` if needed and writes `ca.pem`, `ca.key`, `server.pem` and
/// `server.key` into it: an ECDSA P-256 CA named "Meridian NTS test CA"
/// and a server certificate (valid 2024–2049) for `names`, each a DNS
/// name or IP address literal (e.g. `["localhost", "127.0.0.1"]`).
pub fn generate_test_ca_and_server_cert(dir: &Path, names: &[&str]) -> Result<CertPaths, KeError> {
    if names.is_empty() {
        return Err(KeError::Config(
            "no server names for the certificate".into(),
        ));
    }
    fs::create_dir_all(dir)?;

    let ca_key = KeyPair::generate().map_err(rc)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Meridian NTS test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = date_time_ymd(2024, 1, 1);
    ca_params.not_after = date_time_ymd(2049, 12, 31);
    let ca = ca_params.self_signed(&ca_key).map_err(rc)?;

    let key = KeyPair::generate().map_err(rc)?;
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names.clone()).map_err(rc)?;
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].clone());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = date_time_ymd(2024, 1, 1);
    params.not_after = date_time_ymd(2049, 12, 31);
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(rc)?;

    let paths = CertPaths {
        ca_cert: dir.join("ca.pem"),
        ca_key: dir.join("ca.key"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    write_file(&paths.ca_cert, &ca.pem(), 0o644)?;
    write_file(&paths.ca_key, &ca_key.serialize_pem(), 0o600)?;
    write_file(
        &paths.server_cert,
        &format!("{}{}", cert.pem(), ca.pem()),
        0o644,
    )?;
    write_file(&paths.server_key, &key.serialize_pem(), 0o600)?;
    Ok(paths)
}
