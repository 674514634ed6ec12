//! HTTPS with rustls (aws-lc-rs): certificates from PEM files, or a self-signed certificate for
//! development. Connections are served by hyper's HTTP/1.1 server over tokio-rustls.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::ServerError;

#[derive(Clone)]
pub struct TlsSettings {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSettings(..)")
    }
}

fn tls_error(what: impl Into<String>) -> ServerError {
    ServerError::Tls(what.into())
}

impl TlsSettings {
    pub fn from_pem_files(cert_file: &Path, key_file: &Path) -> Result<Self, ServerError> {
        let certs = CertificateDer::pem_file_iter(cert_file)
            .map_err(|e| tls_error(format!("{}: {e}", cert_file.display())))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_error(format!("{}: {e}", cert_file.display())))?;
        if certs.is_empty() {
            return Err(tls_error(format!("{} holds no certificate", cert_file.display())));
        }
        let key =
            PrivateKeyDer::from_pem_file(key_file).map_err(|e| tls_error(format!("{}: {e}", key_file.display())))?;
        Self::from_der(certs, key)
    }

    /// A certificate for `hosts`, signed by itself (development only). Returns its PEM too, so a
    /// client can trust it.
    pub fn self_signed(hosts: &[String]) -> Result<(Self, String), ServerError> {
        let certified = rcgen::generate_simple_self_signed(hosts.to_vec()).map_err(|e| tls_error(e.to_string()))?;
        let pem = certified.cert.pem();
        let key =
            PrivateKeyDer::try_from(certified.signing_key.serialize_der()).map_err(|e| tls_error(e.to_string()))?;
        let settings = Self::from_der(vec![certified.cert.der().clone()], key)?;
        Ok((settings, pem))
    }

    fn from_der(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Self, ServerError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| tls_error(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsSettings { config: Arc::new(config) })
    }
}

/// Accepts TLS connections until `shutdown` fires.
pub(crate) async fn serve_tls(
    listener: tokio::net::TcpListener,
    settings: TlsSettings,
    app: axum::Router,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let acceptor = TlsAcceptor::from(settings.config);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = TowerToHyperService::new(app);
            if let Err(e) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
