//! `rustls` configurations for one process, and the handshakes on its connections.
//!
//! One [`TlsContext`] holds the cluster CA as the only trust anchor, this process's certificate
//! chain and key, a server configuration that requires a client certificate of the CA
//! (`WebPkiClientVerifier`), and a client configuration that presents this process's
//! certificate and verifies the server's for the DNS name of the role it dials. TLS 1.3 only;
//! the crypto provider is `ring`'s.

use super::{Identity, Peer, Role, SecurityError, pki};
use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io;
use std::sync::Arc;
use tokio::net::TcpStream;

/// One process's TLS: whom it trusts, who it is.
pub struct TlsContext {
    identity: Identity,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_certs(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| SecurityError::Certificate(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(SecurityError::Certificate(format!(
            "{what}: no certificate in it"
        )));
    }
    Ok(certs)
}

impl TlsContext {
    /// A context trusting the CA certificate `ca_pem` alone, presenting `own` (certificate and
    /// key in PEM, issued by that CA).
    pub fn new(ca_pem: &str, own: &pki::Pem) -> Result<TlsContext, SecurityError> {
        let ca = pem_certs("the CA certificate", ca_pem)?;
        let mut roots = RootCertStore::empty();
        for cert in ca {
            roots
                .add(cert)
                .map_err(|e| SecurityError::Certificate(format!("the CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);
        let chain = pem_certs("the certificate", &own.cert)?;
        let identity = pki::identity_of(&chain[0])?;
        let key = PrivateKeyDer::from_pem_slice(own.key.as_bytes())
            .map_err(|e| SecurityError::Certificate(format!("the private key: {e}")))?;
        let provider = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| SecurityError::Certificate(format!("client verifier: {e}")))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| SecurityError::Certificate(format!("server verifier: {e}")))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_webpki_verifier(server_verifier)
            .with_client_auth_cert(chain, key)?;
        Ok(TlsContext {
            identity,
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// Who this process is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Client side: the handshake on `tcp`, verifying that the server holds a certificate of
    /// the cluster CA for `server_role`.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        server_role: Role,
    ) -> io::Result<tokio_rustls::client::TlsStream<TlsIo>> {
        let name = ServerName::try_from(server_role.dns_name()).expect("role names are DNS names");
        tokio_rustls::TlsConnector::from(self.client.clone())
            .connect(name, buffered(tcp))
            .await
    }

    /// Server side: the handshake on `tcp`, requiring a client certificate of the cluster CA;
    /// returns the stream and who the client proved to be.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> io::Result<(tokio_rustls::server::TlsStream<TlsIo>, Peer)> {
        let stream = tokio_rustls::TlsAcceptor::from(self.server.clone())
            .accept(buffered(tcp))
            .await?;
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .ok_or_else(|| io::Error::new(io::ErrorKind::PermissionDenied, "no client certificate"))
            .and_then(|cert| {
                let identity = pki::identity_of(cert)
                    .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()))?;
                Ok(Peer {
                    identity,
                    certificate: pki::cert_digest(cert),
                })
            })?;
        Ok((stream, peer))
    }
}

/// What TLS runs over: the TCP stream behind a read buffer. rustls reads at most 4 KiB per
/// call; without the buffer, every 4 KiB of a large transfer would be a system call of its own.
pub type TlsIo = tokio::io::BufReader<TcpStream>;

/// Bytes the read buffer under TLS holds: the records of one large read in a few system calls,
/// for little memory per connection.
const TLS_READ_BUFFER: usize = 64 << 10;

fn buffered(tcp: TcpStream) -> TlsIo {
    tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, tcp)
}

/// The TLS configuration of a public HTTPS listener (`kfs gateway --tls-cert/--tls-key`): the
/// certificate chain in `cert` (PEM, e.g. from an ACME client or the site's CA) and its private
/// key in `key` (PEM, refused when others can read it), no client certificate asked, TLS 1.3,
/// ALPN `http/1.1`.
pub fn https_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<ServerConfig>, SecurityError> {
    let chain_text = std::fs::read_to_string(cert).map_err(|source| SecurityError::Io {
        path: cert.to_path_buf(),
        source,
    })?;
    let chain = pem_certs(&cert.display().to_string(), &chain_text)?;
    let key_text = super::files::read_secret(key)?;
    let key_der =
        PrivateKeyDer::from_pem_slice(key_text.as_bytes()).map_err(|e| SecurityError::BadFile {
            path: key.to_path_buf(),
            why: format!("no private key in it: {e}"),
        })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
