//! The array's own certificate authority, for its front doors: CIM-XML
//! over HTTPS and NBD over TLS.
//!
//! At its first start an array makes, in `DATA_DIR/tls`:
//!
//! * `ca.pem` and `ca-key.pem` (0600): a CA that exists only to sign this
//!   array's server certificate and the client certificates an operator
//!   issues (`replicim serve --config F --issue-client DIR`);
//! * `cert.pem` and `key.pem` (0600): the server certificate (localhost,
//!   127.0.0.1, ::1 and the array's host name), signed by that CA.
//!
//! Consoles verify the server against `ca.pem` (pywbem `--ca-certs`,
//! wbemcli `-cacert`, rcopy `--ca-file`). A client directory holds what
//! QEMU's `tls-creds-x509` reads (`ca-cert.pem`, `client-cert.pem`,
//! `client-key.pem`), so the same directory serves qemu-io/qemu-nbd over
//! NBD and wbemcli/pywbem over HTTPS: a certificate this CA signed is a
//! credential for the array, in place of a password on a command line.
//!
//! Rotation: remove `DATA_DIR/tls` and restart (a new CA, so every client
//! directory must be issued again), or replace only `cert.pem`/`key.pem`
//! by a certificate the same CA signs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The files of an array's TLS directory.
#[derive(Clone, Debug)]
pub struct Paths {
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Paths {
    pub fn of(dir: &Path) -> Paths {
        Paths {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// How long certificates made here are valid.
const YEARS: i32 = 10;

fn validity(p: &mut CertificateParams) {
    let now = chrono::Utc::now();
    use chrono::Datelike;
    // A day back, for clocks a little behind.
    let start = now - chrono::Duration::days(1);
    p.not_before = rcgen::date_time_ymd(start.year(), start.month() as u8, start.day() as u8);
    p.not_after = rcgen::date_time_ymd(start.year() + YEARS, start.month() as u8, 1);
}

fn serial(p: &mut CertificateParams) -> Result<(), String> {
    let mut s = [0u8; 16];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(|e| format!("/dev/urandom: {e}"))?,
        &mut s,
    )
    .map_err(|e| format!("/dev/urandom: {e}"))?;
    s[0] &= 0x7f;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&s));
    Ok(())
}

fn err(what: &str) -> impl Fn(rcgen::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Loads the TLS directory of array `name`, making the CA and the server
/// certificate when they are missing (also when an older release left a
/// lone self-signed pair there). `host` joins the server certificate's
/// names.
pub fn ensure(dir: &Path, name: &str, host: &str) -> Result<Paths, String> {
    let p = Paths::of(dir);
    if [&p.ca, &p.ca_key, &p.cert, &p.key]
        .iter()
        .all(|f| f.exists())
    {
        crate::secure::check_private(&p.ca_key)?;
        crate::secure::check_private(&p.key)?;
        return Ok(p);
    }
    crate::secure::private_dir(dir)?;
    let (ca_cert, ca_key) = if p.ca.exists() && p.ca_key.exists() {
        // A new server certificate under the CA the clients already trust
        // (the rotation the README describes: delete cert.pem and key.pem).
        crate::secure::check_private(&p.ca_key)?;
        load_ca(&p)?
    } else {
        if p.cert.exists() {
            tracing::info!(
                dir = %dir.display(),
                "replacing the HTTPS pair with a new CA and a server certificate it signs"
            );
        }
        let (ca_cert, ca_key) = make_ca(name)?;
        crate::secure::write_private(&p.ca_key, ca_key.serialize_pem().as_bytes())?;
        crate::secure::write_public(&p.ca, ca_cert.pem().as_bytes())?;
        (ca_cert, ca_key)
    };
    // The server certificate.
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    for n in [name, host] {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    let mut sp = CertificateParams::new(names).map_err(err("server certificate names"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "replicim");
    dn.push(DnType::CommonName, name);
    sp.distinguished_name = dn;
    sp.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut sp);
    serial(&mut sp)?;
    let key = KeyPair::generate().map_err(err("making the server key"))?;
    let cert = sp
        .signed_by(&key, &ca_cert, &ca_key)
        .map_err(err("signing the server certificate"))?;
    crate::secure::write_private(&p.key, key.serialize_pem().as_bytes())?;
    crate::secure::write_public(&p.cert, cert.pem().as_bytes())?;
    Ok(p)
}

/// A new CA for the array `name`.
fn make_ca(name: &str) -> Result<(rcgen::Certificate, KeyPair), String> {
    let ca_key = KeyPair::generate().map_err(err("making the CA key"))?;
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "replicim");
    dn.push(DnType::CommonName, format!("replicim CA of {name}"));
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca);
    serial(&mut ca)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(err("making the CA"))?;
    Ok((ca_cert, ca_key))
}

/// The CA of `tls`, able to sign (its certificate as rcgen rebuilds it from
/// the PEM: the same subject and key, so what it signs chains to ca.pem).
fn load_ca(tls: &Paths) -> Result<(rcgen::Certificate, KeyPair), String> {
    let ca_params = CertificateParams::from_ca_cert_pem(&read(&tls.ca)?)
        .map_err(|e| format!("{}: {e}", tls.ca.display()))?;
    let ca_key = KeyPair::from_pem(&read(&tls.ca_key)?)
        .map_err(|e| format!("{}: {e}", tls.ca_key.display()))?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(err("loading the CA"))?;
    Ok((ca_cert, ca_key))
}

/// Issues a client certificate named `client` signed by the CA of `tls`,
/// into `out` (0700) as QEMU's `tls-creds-x509` directory layout:
/// `ca-cert.pem`, `client-cert.pem` and `client-key.pem` (0600).
pub fn issue_client(tls: &Paths, out: &Path, client: &str) -> Result<(), String> {
    crate::core::names::array(client).map_err(|e| format!("client name: {e}"))?;
    let ca_pem = read(&tls.ca)?;
    let (ca_cert, ca_key) = load_ca(tls)?;
    let mut cp = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "replicim");
    dn.push(DnType::CommonName, client);
    cp.distinguished_name = dn;
    cp.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut cp);
    serial(&mut cp)?;
    let key = KeyPair::generate().map_err(err("making the client key"))?;
    let cert = cp
        .signed_by(&key, &ca_cert, &ca_key)
        .map_err(err("signing the client certificate"))?;
    crate::secure::private_dir(out)?;
    crate::secure::write_public(&out.join("ca-cert.pem"), ca_pem.as_bytes())?;
    crate::secure::write_private(&out.join("client-key.pem"), key.serialize_pem().as_bytes())?;
    crate::secure::write_public(&out.join("client-cert.pem"), cert.pem().as_bytes())?;
    Ok(())
}

fn read(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Every certificate in a PEM file.
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no private key", path.display()))
}

/// A root store of the certificates in `path`.
pub fn roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(path)? {
        roots
            .add(c)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(roots)
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How a client checks the server it reached.
#[derive(Clone, Debug)]
pub enum ServerCheck {
    /// A chain to a CA in this PEM file (the array's `tls/ca.pem`, or the
    /// `ca-cert.pem` of a client directory).
    Ca(PathBuf),
    /// The server certificate's SHA-256 fingerprint.
    Pin(String),
    /// No check (`--insecure`): encrypted, but to whoever answers.
    Insecure,
}

/// A TLS client configuration: the server checked as `check` says, and a
/// client certificate (`client-cert.pem`, `client-key.pem`) when given.
pub fn client_config(
    check: &ServerCheck,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder =
        match check {
            ServerCheck::Ca(ca) => builder.with_root_certificates(roots(ca)?),
            ServerCheck::Pin(fp) => builder.dangerous().with_custom_certificate_verifier(
                crate::link::tls::pinned_server(&[crate::link::tls::parse_fingerprint(fp)?]),
            ),
            ServerCheck::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(crate::link::tls::unverified_server()),
        };
    let config = match client {
        Some((cert, k)) => builder
            .with_client_auth_cert(certs(cert)?, key(k)?)
            .map_err(|e| format!("{}: {e}", cert.display()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Whether clients of a TLS listener must show a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCerts {
    /// None asked for.
    Off,
    /// Checked when shown (HTTPS: a certificate stands in for the password).
    Optional,
    /// A connection without one is refused (NBD).
    Required,
}

/// A TLS server configuration: the certificate chain and key of `cert` and
/// `key`, and client certificates checked against the CA in `client_ca`.
pub fn server_config(
    cert: &Path,
    key_path: &Path,
    client_ca: Option<&Path>,
    clients: ClientCerts,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain = certs(cert)?;
    let key = key(key_path)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match (clients, client_ca) {
        (ClientCerts::Off, _) | (_, None) => builder.with_no_client_auth(),
        (c, Some(ca)) => {
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            );
            let v = if c == ClientCerts::Optional {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| e.to_string())?)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    config.alpn_protocols = vec![];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn the_server_and_client_certificates_chain_to_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let p = ensure(&dir.path().join("tls"), "site-a", "array1").unwrap();
        // Loaded again, nothing is remade.
        let before = std::fs::read(&p.cert).unwrap();
        ensure(&dir.path().join("tls"), "site-a", "array1").unwrap();
        assert_eq!(before, std::fs::read(&p.cert).unwrap());
        // Rotated: a new server certificate under the same CA.
        let ca_before = std::fs::read(&p.ca).unwrap();
        std::fs::remove_file(&p.cert).unwrap();
        std::fs::remove_file(&p.key).unwrap();
        ensure(&dir.path().join("tls"), "site-a", "array1").unwrap();
        assert_ne!(before, std::fs::read(&p.cert).unwrap());
        assert_eq!(ca_before, std::fs::read(&p.ca).unwrap());
        issue_client(&p, &dir.path().join("c"), "host1").unwrap();
        let roots = Arc::new(roots(&p.ca).unwrap());
        // The client certificate passes rustls' client verifier...
        let v =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .unwrap();
        let client = certs(&dir.path().join("c/client-cert.pem")).unwrap();
        v.verify_client_cert(&client[0], &[], rustls::pki_types::UnixTime::now())
            .unwrap();
        // ...and a stranger CA's does not.
        let other = tempfile::tempdir().unwrap();
        let q = ensure(other.path(), "site-b", "site-b").unwrap();
        issue_client(&q, &other.path().join("c"), "host1").unwrap();
        let stranger = certs(&other.path().join("c/client-cert.pem")).unwrap();
        assert!(v
            .verify_client_cert(&stranger[0], &[], rustls::pki_types::UnixTime::now())
            .is_err());
        // The server certificate is valid for 127.0.0.1 under the CA.
        let sv = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .unwrap();
        let server = certs(&p.cert).unwrap();
        for name in ["127.0.0.1", "localhost", "array1", "site-a"] {
            sv.verify_server_cert(
                &server[0],
                &[],
                &rustls::pki_types::ServerName::try_from(name).unwrap(),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        use std::os::unix::fs::PermissionsExt;
        for f in [&p.ca_key, &p.key, &dir.path().join("c/client-key.pem")] {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
    }
}
