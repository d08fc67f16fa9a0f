//! TLS to PostgreSQL, with libpq's `sslmode` meanings, on rustls.
//!
//! A worker in another region reaches the ledger over networks nobody controls, so the
//! connection string's TLS parameters mean what they mean to `psql`:
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | no | — |
//! | `prefer` (the default) | if the server offers it | no |
//! | `require` | yes | no; as `verify-ca` when `sslrootcert` is given |
//! | `verify-ca` | yes | chain to a trusted root |
//! | `verify-full` | yes | chain to a trusted root, and the host name |
//!
//! Trusted roots: `sslrootcert=FILE` (PEM, one or more certificates); else
//! `~/.postgresql/root.crt` where it exists, as libpq; else, or with `sslrootcert=system`,
//! the Mozilla root set (`webpki-roots`; hosted PostgreSQL with a public CA needs nothing
//! more). `sslcert` and `sslkey` (PEM) present a client certificate. tokio-postgres knows
//! only `disable`, `prefer` and `require` and no file parameters, so [`split`] takes these
//! out of the URL before the driver reads it. SCRAM uses channel binding
//! (`tls-server-end-point`) whenever the connection is encrypted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// `sslrootcert` unset: `~/.postgresql/root.crt` if present, else the Mozilla set.
    Default,
    /// `sslrootcert=system`: the Mozilla set.
    System,
    File(PathBuf),
}

/// The TLS parameters of one connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub mode: Mode,
    pub roots: Roots,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options { mode: Mode::Prefer, roots: Roots::Default, client_cert: None, client_key: None }
    }
}

impl Options {
    /// What the driver itself is told: it only distinguishes off, optional and required.
    pub fn driver_mode(&self) -> SslMode {
        match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }

    /// How much of the server's certificate is checked, after libpq's rule that `require`
    /// with an explicit root file verifies the chain.
    fn check(&self) -> Check {
        match self.mode {
            Mode::Disable | Mode::Prefer => Check::Nothing,
            Mode::Require if matches!(self.roots, Roots::File(_)) => Check::Chain,
            Mode::Require => Check::Nothing,
            Mode::VerifyCa => Check::Chain,
            Mode::VerifyFull => Check::ChainAndName,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// Takes the TLS parameters out of a `postgres://` URL's query, returning the URL the
/// driver may parse and what was taken. Other parameters, and their order, are kept.
pub fn split(url: &str) -> Result<(String, Options), String> {
    let Some((before, query)) = url.split_once('?') else { return Ok((url.to_owned(), Options::default())) };
    let mut options = Options::default();
    let mut kept = Vec::new();
    for param in query.split('&') {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let value_text = crate::percent_decoded(value);
        match crate::percent_decoded(key).as_str() {
            "sslmode" => {
                options.mode = match value_text.as_str() {
                    "disable" => Mode::Disable,
                    // `allow` (plain first, TLS if refused) is as safe as `prefer`, which it becomes.
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                        ));
                    }
                }
            }
            "sslrootcert" => {
                options.roots = match value_text.as_str() {
                    "system" => Roots::System,
                    "" => Roots::Default,
                    path => Roots::File(PathBuf::from(path)),
                }
            }
            "sslcert" => options.client_cert = Some(PathBuf::from(value_text)).filter(|p| !p.as_os_str().is_empty()),
            "sslkey" => options.client_key = Some(PathBuf::from(value_text)).filter(|p| !p.as_os_str().is_empty()),
            _ => kept.push(param),
        }
    }
    if options.client_cert.is_some() != options.client_key.is_some() {
        return Err("sslcert and sslkey go together: give both files, or neither".to_owned());
    }
    let url = if kept.is_empty() { before.to_owned() } else { format!("{before}?{}", kept.join("&")) };
    Ok((url, options))
}

/// The connector for `options`: its certificate checks, roots and client certificate.
/// Files are read now, so a missing or unreadable one is reported at open, by name.
pub fn connector(options: &Options) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?;
    let check = options.check();
    let webpki = match check {
        Check::Nothing => None,
        Check::Chain | Check::ChainAndName => {
            let roots = Arc::new(roots(&options.roots)?);
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("TLS set-up failed: {e}"))?;
            Some(webpki)
        }
    };
    let verifier = Arc::new(Verifier { provider, webpki, check_name: check == Check::ChainAndName });
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let config = match (&options.client_cert, &options.client_key) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read the client key sslkey={}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the client certificate and key do not go together: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

fn roots(roots: &Roots) -> Result<RootCertStore, String> {
    let file = match roots {
        Roots::File(path) => Some(path.clone()),
        Roots::System => None,
        Roots::Default => {
            std::env::var_os("HOME").map(|home| Path::new(&home).join(".postgresql/root.crt")).filter(|p| p.is_file())
        }
    };
    let mut store = RootCertStore::empty();
    match file {
        Some(path) => {
            for cert in certificates(&path)? {
                store
                    .add(cert)
                    .map_err(|e| format!("sslrootcert={}: not a usable CA certificate: {e}", path.display()))?;
            }
        }
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(store)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display()));
    }
    Ok(certs)
}

/// The server's certificate as `sslmode` asks: unchecked for `prefer` and `require`
/// (libpq's meaning: encrypted, not authenticated), else its chain to a trusted root and,
/// unless only the CA is checked, its name. The handshake's signatures are verified either
/// way, so the session keys belong to the certificate presented.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    /// `None`: the certificate is not checked.
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    check_name: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else { return Ok(ServerCertVerified::assertion()) };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_takes_out_the_tls_parameters_and_keeps_the_rest_in_order() {
        let (url, o) = split(
            "postgres://u:p@db.example:5432/ledger?application_name=w1&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(url, "postgres://u:p@db.example:5432/ledger?application_name=w1&connect_timeout=5");
        assert_eq!(o.mode, Mode::VerifyFull);
        assert_eq!(o.roots, Roots::File(PathBuf::from("/etc/ca.pem")));
        assert_eq!(o.driver_mode(), SslMode::Require);
        assert_eq!(o.check(), Check::ChainAndName);

        let (url, o) = split("postgres://db/x?sslmode=disable").unwrap();
        assert_eq!((url.as_str(), o.driver_mode()), ("postgres://db/x", SslMode::Disable));
        let (url, o) = split("postgres://db/x").unwrap();
        assert_eq!((url.as_str(), o.mode, o.check()), ("postgres://db/x", Mode::Prefer, Check::Nothing));
    }

    #[test]
    fn require_checks_the_chain_only_when_a_root_file_is_named() {
        let (_, o) = split("postgres://db/x?sslmode=require").unwrap();
        assert_eq!(o.check(), Check::Nothing);
        let (_, o) = split("postgres://db/x?sslmode=require&sslrootcert=ca.pem").unwrap();
        assert_eq!(o.check(), Check::Chain);
        let (_, o) = split("postgres://db/x?sslmode=verify-ca&sslrootcert=system").unwrap();
        assert_eq!((o.check(), o.roots), (Check::Chain, Roots::System));
    }

    #[test]
    fn bad_tls_parameters_are_refused_with_the_fix() {
        let e = split("postgres://db/x?sslmode=verify_full").unwrap_err();
        assert!(e.contains("verify_full") && e.contains("verify-full"), "{e}");
        let e = split("postgres://db/x?sslcert=c.pem").unwrap_err();
        assert!(e.contains("sslkey"), "{e}");
        let Err(e) =
            connector(&split("postgres://db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem").unwrap().1)
        else {
            panic!("a missing root file is refused");
        };
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
