//! The replication link's security: mutual TLS 1.3 with pinned peers.
//!
//! Each array has a link identity: a key pair and a self-signed
//! certificate it makes at its first start (`DATA_DIR/link/key.pem`, mode
//! 0600, and `cert.pem`). Its peers pin that certificate by its SHA-256
//! fingerprint (`[[peer]] fingerprint = "sha256:..."` in their
//! configuration). Both sides present their certificate and check the
//! other's against the pinned fingerprints before a single link frame is
//! read, so an impostor — a process that knows the array names, a replayed
//! or garbage handshake, a peer with another certificate — is refused by
//! TLS and never reaches the core or displaces a live connection. The
//! traffic is encrypted and integrity-protected by TLS 1.3.
//!
//! Why pinning and not a CA: two arrays that replicate to each other are
//! configured together anyway (each names the other's address); the
//! fingerprint is one more line of that, with no CA to run, expire or
//! compromise. Rotation: make a new identity (remove `link/`, restart),
//! give its fingerprint to every peer (a peer may pin the old and the new
//! fingerprint at once, `fingerprints = [...]`), restart the peers.
//!
//! The crypto is rustls (already the HTTPS server's) with its ring
//! provider; only the certificate check is ours: a pinned fingerprint in
//! place of a chain to a root, with the handshake signatures still checked
//! by rustls' own functions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

/// An array's link identity.
#[derive(Clone)]
pub struct Identity {
    pub cert: CertificateDer<'static>,
    key: Arc<PrivateKeyDer<'static>>,
    pub cert_path: PathBuf,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", fingerprint(&self.cert))
    }
}

impl Identity {
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }
}

/// `sha256:` and the hex SHA-256 of a certificate's DER.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let d = Sha256::digest(cert.as_ref());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A fingerprint as configured: `sha256:` and 64 hex digits (colons and
/// case ignored, as tools print them differently).
pub fn parse_fingerprint(s: &str) -> Result<String, String> {
    let hex: String = s
        .trim()
        .strip_prefix("sha256:")
        .or_else(|| s.trim().strip_prefix("SHA256:"))
        .unwrap_or(s.trim())
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "fingerprint {s:?} is not sha256: and 64 hex digits (see the peer's `replicim serve --link-fingerprint`)"
        ));
    }
    Ok(format!("sha256:{hex}"))
}

/// The fingerprint of the first certificate in a PEM file.
pub fn fingerprint_of_file(path: &Path) -> Result<String, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cert = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .ok_or_else(|| format!("{}: no certificate", path.display()))?
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(fingerprint(&cert))
}

/// Loads the identity in `dir` (`cert.pem`, `key.pem`), making one if there
/// is none: a fresh key pair and a self-signed certificate naming `name`.
/// The directory is 0700 and the key 0600, whatever the umask.
pub fn ensure_identity(dir: &Path, name: &str) -> Result<Identity, String> {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !(cert_path.exists() && key_path.exists()) {
        crate::secure::private_dir(dir)?;
        let mut names = vec![name.to_string()];
        if !names.iter().any(|n| n == "replicim-link") {
            names.push("replicim-link".into());
        }
        let ck = rcgen::generate_simple_self_signed(names)
            .map_err(|e| format!("making the link identity: {e}"))?;
        crate::secure::write_private(&key_path, ck.key_pair.serialize_pem().as_bytes())?;
        crate::secure::write_public(&cert_path, ck.cert.pem().as_bytes())?;
    }
    let pem = std::fs::read(&cert_path).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let cert = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .ok_or_else(|| format!("{}: no certificate", cert_path.display()))?
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let kpem = std::fs::read(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let key = rustls_pemfile::private_key(&mut kpem.as_slice())
        .map_err(|e| format!("{}: {e}", key_path.display()))?
        .ok_or_else(|| format!("{}: no private key", key_path.display()))?;
    crate::secure::check_private(&key_path)?;
    Ok(Identity {
        cert,
        key: Arc::new(key),
        cert_path,
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts exactly the certificates whose fingerprints are pinned (or,
/// with `any`, every certificate: `rcopy --insecure`). Handshake
/// signatures are checked by rustls either way.
#[derive(Debug)]
struct Pinned {
    /// fingerprint -> peer name.
    allowed: BTreeMap<String, String>,
    any: bool,
    provider: Arc<CryptoProvider>,
}

/// A server check that accepts the certificates with these fingerprints,
/// whatever signed them and whatever names they carry.
pub fn pinned_server(fingerprints: &[String]) -> Arc<dyn ServerCertVerifier> {
    Arc::new(Pinned {
        allowed: fingerprints
            .iter()
            .map(|f| (f.clone(), "server".to_string()))
            .collect(),
        any: false,
        provider: provider(),
    })
}

/// A server check that accepts any certificate (encryption without
/// knowing who answers: only on an explicit `--insecure`).
pub fn unverified_server() -> Arc<dyn ServerCertVerifier> {
    Arc::new(Pinned {
        allowed: BTreeMap::new(),
        any: true,
        provider: provider(),
    })
}

impl Pinned {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.any || self.allowed.contains_key(&fingerprint(cert)) {
            Ok(())
        } else {
            Err(rustls::Error::General(format!(
                "certificate {} is not pinned for any peer",
                fingerprint(cert)
            )))
        }
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// What one array needs to run authenticated links: its identity and each
/// peer's pinned fingerprints.
#[derive(Clone, Debug)]
pub struct LinkTls {
    pub identity: Identity,
    /// peer name -> its pinned fingerprints.
    pub peers: BTreeMap<String, Vec<String>>,
}

impl LinkTls {
    fn pinned(&self, only: Option<&str>) -> Pinned {
        let mut allowed = BTreeMap::new();
        for (peer, fps) in &self.peers {
            if only.is_none_or(|o| o == peer) {
                for fp in fps {
                    allowed.insert(fp.clone(), peer.clone());
                }
            }
        }
        Pinned {
            allowed,
            any: false,
            provider: provider(),
        }
    }

    /// The peer a verified certificate belongs to.
    pub fn peer_of(&self, cert: &CertificateDer<'_>) -> Option<String> {
        let fp = fingerprint(cert);
        self.peers
            .iter()
            .find(|(_, fps)| fps.contains(&fp))
            .map(|(p, _)| p.clone())
    }

    /// The dialing side's TLS configuration for reaching `peer`.
    pub fn client(&self, peer: &str) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut c = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(self.pinned(Some(peer))))
            .with_client_auth_cert(
                vec![self.identity.cert.clone()],
                self.identity.key.clone_key(),
            )
            .map_err(|e| format!("link identity: {e}"))?;
        c.max_fragment_size = Some(MAX_RECORD);
        Ok(Arc::new(c))
    }

    /// The accepting side's TLS configuration (any pinned peer).
    pub fn server(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut c = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(Arc::new(self.pinned(None)))
            .with_single_cert(
                vec![self.identity.cert.clone()],
                self.identity.key.clone_key(),
            )
            .map_err(|e| format!("link identity: {e}"))?;
        c.max_fragment_size = Some(MAX_RECORD);
        Ok(Arc::new(c))
    }
}

/// Largest TLS record on the link, header included. The receiver sees nothing
/// of a record until all of it has arrived, and its liveness timeout counts
/// from the last thing it saw: with TLS' default 16 KiB records a slow line
/// (32 KiB/s) shows the peer silent for half a second at a time, long enough
/// to trip a short heartbeat timeout while data is flowing. One block's
/// frame per record keeps the gaps as short as without TLS, for about 0.5%
/// more bytes on the wire.
pub const MAX_RECORD: usize = 4096 + 256;
