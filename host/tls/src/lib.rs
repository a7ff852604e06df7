//! TLS for the fleet's links: the coordinator's API (HTTPS) and MQTT (MQTTS).
//!
//! Data path:
//! - [`Ca::load_or_create`]: a private certificate authority in the
//!   coordinator's `data_dir/tls/` (`ca.pem`, `ca.key` 0600), made on first
//!   start: a zero-setup fleet gets TLS without buying a certificate.
//!   [`Ca::issue_server`] signs the coordinator's (or a broker's) server
//!   certificate for the names devices use to reach it.
//! - [`server_config`] → [`Listener::bind`]: accepts TCP connections and runs
//!   each handshake in its own task under [`HANDSHAKE_TIMEOUT`], at most
//!   [`MAX_HANDSHAKES`] at once, so a client that connects and never speaks
//!   stalls nobody. With a client CA ([`server_config`]'s `clients`), every
//!   client must present a certificate chaining to it; [`peer_name`] is the
//!   common name it was issued to (a device id).
//! - Device certificates: a device keeps its own key ([`DeviceKey`], made on
//!   the device, never sent) and sends the public half at enrolment;
//!   [`Ca::issue_client`] certifies it for the device id.
//! - [`ClientTls`]: what a client trusts (the system's roots plus a CA file,
//!   usually the coordinator's `ca.pem`) and, for a device, the certificate
//!   it presents ([`ClientTls::with_identity`]), for reqwest
//!   ([`ClientTls::http`]) and rumqttc ([`ClientTls::mqtt_options`]) alike.
//!
//! One crypto provider everywhere: rustls' `ring` (no C toolchain per target,
//! so the aarch64 gateway agent cross-builds with Debian's gcc alone).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

/// A handshake not finished by then is dropped: a gateway on a slow cellular
/// link completes one in a few round trips (well under a second); ten
/// seconds leave room for a 2G link while bounding what an idle socket holds.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; a connection beyond them is closed at
/// once (its client retries with backoff). A 1,000-device fleet reconnecting
/// after a restart fits, and an ECDSA P-256 handshake costs ~1 ms of CPU.
pub const MAX_HANDSHAKES: usize = 1024;

/// The private CA's certificate and key, in the coordinator's TLS directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";

/// Everything that can go wrong setting TLS up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} holds no usable PEM {expected}")]
    Pem {
        what: String,
        expected: &'static str,
    },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    MqttUrl(#[from] wasmops_protocol::BadMqttUrl),
    #[error("`{0}` is MQTT over TLS (mqtts://) but no TLS settings were given")]
    NoClientTls(String),
    #[error("a device public key must be an uncompressed P-256 point (65 bytes, 0x04 first)")]
    PublicKey,
    #[error("client certificate verification: {0}")]
    ClientVerifier(String),
}

/// rustls' `ring` provider, which every config here is built with.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The private CA: signs the coordinator's server certificates.
pub struct Ca {
    cert_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// The CA's subject and usages, derived from its key alone, so a CA read
/// back from its files signs exactly as the one that was made. The subject
/// names the key (two fleets' CAs never share a name, so a certificate from
/// the other is an unknown issuer, not a bad signature).
fn ca_params(key: &rcgen::KeyPair) -> Result<rcgen::CertificateParams, rcgen::Error> {
    use sha2::Digest;
    let id = sha2::Sha256::digest(key.public_key_raw());
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!(
            "wasmops fleet CA {:x}",
            u64::from_be_bytes(id[..8].try_into().expect("8 bytes"))
        ),
    );
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "wasmops");
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut p, 20);
    Ok(p)
}

/// Valid from 2024-01-01 (a gateway without a real-time clock boots in the
/// past until NTP answers; a fixed start keeps it from refusing a fresh
/// certificate meanwhile) to `years` from now.
fn set_validity(p: &mut rcgen::CertificateParams, years: i32) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let year = 1970 + (now / 31_556_952) as i32;
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.into(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), TlsError> {
    wasmops_trust::write_atomic_mode(path, bytes, mode).map_err(|source| TlsError::Write {
        path: path.into(),
        source,
    })
}

impl Ca {
    /// The CA in `dir` (`ca.pem`, `ca.key`), made there on first use.
    pub fn load_or_create(dir: &Path) -> Result<Ca, TlsError> {
        let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        if key_path.exists() {
            let key = rcgen::KeyPair::from_pem(&read(&key_path)?).map_err(|_| TlsError::Pem {
                what: key_path.display().to_string(),
                expected: "private key",
            })?;
            let cert_pem = read(&cert_path)?;
            return Ok(Ca {
                cert_pem,
                issuer: rcgen::Issuer::new(ca_params(&key)?, key),
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.into(),
            source,
        })?;
        let key = rcgen::KeyPair::generate()?;
        let params = ca_params(&key)?;
        let cert_pem = params.self_signed(&key)?.pem();
        write(&key_path, key.serialize_pem().as_bytes(), Some(0o600))?;
        write(&cert_path, cert_pem.as_bytes(), None)?;
        tracing::info!("created the fleet's private CA in {}", dir.display());
        Ok(Ca {
            cert_pem,
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM: what clients are told to trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for device `device`'s public key (`public_key`: the raw
    /// uncompressed P-256 point [`DeviceKey::public_key`] gives), for client
    /// authentication, valid for [`CLIENT_CERT_YEARS`].
    pub fn issue_client(&self, device: &str, public_key: &[u8]) -> Result<String, TlsError> {
        if public_key.len() != 65 || public_key[0] != 4 {
            return Err(TlsError::PublicKey);
        }
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, device);
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        set_validity(&mut p, CLIENT_CERT_YEARS);
        let key = RawP256(public_key.to_vec());
        Ok(p.signed_by(&key, &self.issuer)?.pem())
    }

    /// A fresh server certificate for `names` (DNS names or IP addresses),
    /// valid for three years: (chain PEM — leaf then CA —, key PEM).
    pub fn issue_server(&self, names: &[String]) -> Result<(String, String), TlsError> {
        let mut p = rcgen::CertificateParams::new(names.to_vec())?;
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().cloned().unwrap_or_else(|| "wasmops".into()),
        );
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        set_validity(&mut p, 3);
        let key = rcgen::KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok((
            format!("{}{}", cert.pem(), self.cert_pem),
            key.serialize_pem(),
        ))
    }
}

/// How long a device certificate is valid: a gateway's service life between
/// re-enrolments (a reset device's certificate is useless without its
/// credential, which the broker checks too).
pub const CLIENT_CERT_YEARS: i32 = 5;

/// A device's public key as it sent it.
struct RawP256(Vec<u8>);

impl rcgen::PublicKeyData for RawP256 {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// A device's own key pair (ECDSA P-256), kept in its state directory.
pub struct DeviceKey {
    pem: String,
    public: Vec<u8>,
}

impl DeviceKey {
    /// The key in `path` (PEM, 0600), made there on first use.
    pub fn load_or_create(path: &Path) -> Result<DeviceKey, TlsError> {
        let key = if path.exists() {
            rcgen::KeyPair::from_pem(&read(path)?).map_err(|_| TlsError::Pem {
                what: path.display().to_string(),
                expected: "private key",
            })?
        } else {
            let key = rcgen::KeyPair::generate()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
                    path: dir.into(),
                    source,
                })?;
            }
            write(path, key.serialize_pem().as_bytes(), Some(0o600))?;
            key
        };
        Ok(DeviceKey {
            pem: key.serialize_pem(),
            public: key.public_key_raw().to_vec(),
        })
    }

    /// The public half, as [`Ca::issue_client`] takes it.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }
}

/// The common name of the certificate a client presented on `stream`.
pub fn peer_name(stream: &TlsStream<TcpStream>) -> Option<String> {
    let (_, session) = stream.get_ref();
    let der = session.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// The certificates in a PEM text (`what` names it in errors).
pub fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: what.into(),
            expected: "certificate",
        });
    }
    Ok(certs)
}

/// The private key in a PEM text (`what` names it in errors).
fn key_from_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|_| TlsError::Pem {
        what: what.into(),
        expected: "private key",
    })
}

/// A server's TLS settings from its certificate chain and key (PEM). With
/// `clients` (a CA, PEM), every client must present a certificate it issued.
pub fn server_config(
    chain_pem: &[u8],
    key_pem: &[u8],
    clients: Option<&[u8]>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certs_from_pem(chain_pem, "the server certificate")?;
    let key = key_from_pem(key_pem, "the server key")?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs_from_pem(ca, "the client CA")? {
                roots.add(cert)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::ClientVerifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    Ok(Arc::new(builder.with_single_cert(chain, key)?))
}

/// A TLS listener: TCP accepts in one task, each handshake in its own.
pub struct Listener {
    local: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl Listener {
    /// Listens on `addr` with `config`; handshakes start at once.
    pub async fn bind(
        addr: SocketAddr,
        config: Arc<rustls::ServerConfig>,
    ) -> Result<Listener, TlsError> {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| TlsError::Listen { addr, source })?;
        let local = tcp
            .local_addr()
            .map_err(|source| TlsError::Listen { addr, source })?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, do not spin.
                        tracing::warn!("accept on {local}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(
                        "{MAX_HANDSHAKES} TLS handshakes in progress: {peer} turned away"
                    );
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            drop(slot);
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                    }
                });
            }
        });
        Ok(Listener { local, ready })
    }

    /// The next connection whose handshake completed.
    pub async fn accept(&mut self) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
        self.ready.recv().await
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// What a client trusts: the system's roots, plus a CA (usually the
/// coordinator's private `ca.pem`). Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    ca_pem: Option<Vec<u8>>,
    roots: Arc<rustls::RootCertStore>,
    config: Arc<rustls::ClientConfig>,
    identity: bool,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("private_ca", &self.ca_pem.is_some())
            .field("identity", &self.identity)
            .finish()
    }
}

impl ClientTls {
    /// The system's roots and `ca_pem` (PEM, one or more certificates).
    pub fn new(ca_pem: Option<Vec<u8>>) -> Result<ClientTls, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(pem) = &ca_pem {
            for cert in certs_from_pem(pem, "the CA certificate")? {
                roots.add(cert)?;
            }
        }
        let roots = Arc::new(roots);
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        Ok(ClientTls {
            ca_pem,
            roots,
            config: Arc::new(config),
            identity: false,
        })
    }

    /// The same trust, presenting `cert_pem` (a chain) with `key_pem` to
    /// servers that ask for a client certificate.
    pub fn with_identity(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<ClientTls, TlsError> {
        let chain = certs_from_pem(cert_pem, "the device certificate")?;
        let key = key_from_pem(key_pem, "the device key")?;
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(chain, key)?;
        Ok(ClientTls {
            ca_pem: self.ca_pem.clone(),
            roots: self.roots.clone(),
            config: Arc::new(config),
            identity: true,
        })
    }

    /// The rustls settings themselves (for a raw TLS stream).
    pub fn rustls_config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    /// Whether this presents a client certificate.
    pub fn has_identity(&self) -> bool {
        self.identity
    }

    /// [`ClientTls::new`] with the CA read from `path`, if given.
    pub fn from_file(path: Option<&Path>) -> Result<ClientTls, TlsError> {
        ClientTls::new(path.map(read).transpose()?.map(String::into_bytes))
    }

    /// The private CA, PEM, if one was given.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// An HTTP client builder that trusts what this does.
    pub fn http(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().use_preconfigured_tls((*self.config).clone())
    }

    /// [`ClientTls::http`], blocking.
    pub fn http_blocking(&self) -> reqwest::blocking::ClientBuilder {
        reqwest::blocking::Client::builder().use_preconfigured_tls((*self.config).clone())
    }

    /// MQTT options for `client_id` at `url`: `mqtts://` connects over TLS
    /// with these roots, `mqtt://` in clear.
    pub fn mqtt_options(
        &self,
        client_id: String,
        url: &str,
    ) -> Result<rumqttc::MqttOptions, TlsError> {
        mqtt_options(Some(self), client_id, url)
    }
}

/// MQTT options for `client_id` at `url`; `mqtts://` needs `tls`.
pub fn mqtt_options(
    tls: Option<&ClientTls>,
    client_id: String,
    url: &str,
) -> Result<rumqttc::MqttOptions, TlsError> {
    let (host, port) = wasmops_protocol::parse_mqtt_url(url)?;
    let mut opts = rumqttc::MqttOptions::new(client_id, host, port);
    if wasmops_protocol::mqtt_url_is_tls(url) {
        let tls = tls.ok_or_else(|| TlsError::NoClientTls(url.into()))?;
        opts.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
            tls.config.clone(),
        )));
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn a_ca_read_back_signs_certificates_its_first_self_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let first = Ca::load_or_create(dir.path()).unwrap();
        let again = Ca::load_or_create(dir.path()).unwrap();
        assert_eq!(first.cert_pem(), again.cert_pem());
        let (chain, key) = again
            .issue_server(&["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        // The server config takes the pair, and a client trusting only the
        // CA verifies the leaf for both names, and not for another.
        server_config(chain.as_bytes(), key.as_bytes(), None).unwrap();
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            r.add(
                certs_from_pem(first.cert_pem().as_bytes(), "ca")
                    .unwrap()
                    .remove(0),
            )
            .unwrap();
            Arc::new(r)
        };
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .unwrap();
        let certs = certs_from_pem(chain.as_bytes(), "chain").unwrap();
        let now = rustls::pki_types::UnixTime::now();
        for (name, ok) in [
            ("localhost", true),
            ("127.0.0.1", true),
            ("example.com", false),
        ] {
            let name = rustls::pki_types::ServerName::try_from(name).unwrap();
            let verdict = verifier.verify_server_cert(&certs[0], &certs[1..], &name, &[], now);
            assert_eq!(verdict.is_ok(), ok, "{name:?}: {verdict:?}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CA_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
