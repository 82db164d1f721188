//! The gRPC transport to LND: one HTTP/2 connection over TLS pinned to LND's `tls.cert`, with
//! `TCP_NODELAY` set on the socket, shared (multiplexed) by the `lnrpc`, `routerrpc` and
//! `invoicesrpc` clients; the macaroon rides on every call as the `macaroon` header.
//!
//! Why not `fedimint_tonic_lnd::connect`: its `HttpConnector` keeps Nagle's algorithm on, and
//! a gRPC request is written as several small segments (HEADERS, DATA, WINDOW_UPDATE...):
//! Nagle holds the second one back until the first is ACKed, the peer delays that ACK by
//! ~40 ms, and every call costs ~40 ms on loopback (see docs/performance.md, "Nagle stalls").

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use fedimint_tonic_lnd::tonic::codegen::InterceptedService;
use fedimint_tonic_lnd::tonic::codegen::http::Uri;
use fedimint_tonic_lnd::tonic::metadata::{Ascii, MetadataValue};
use fedimint_tonic_lnd::tonic::service::Interceptor;
use fedimint_tonic_lnd::tonic::{Request, Status};
use fedimint_tonic_lnd::{invoicesrpc, lnrpc, routerrpc};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use mostro_core::ports::{LnError, LnErrorKind};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// Interval of the HTTP/2 keep-alive PING once the connection has been silent that long (the
/// block-height poll usually keeps it busy, so pings are rare).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// A PING not answered within this is a dead connection: it is closed and the next call
/// dials again.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

type Service = InterceptedService<
    HttpClient<HttpsConnector<HttpConnector>, fedimint_tonic_lnd::tonic::body::Body>,
    Macaroon,
>;

/// The three LND clients on one shared HTTP/2 connection. Cloning is cheap (the connection
/// pool is shared by every clone).
#[derive(Clone)]
pub(crate) struct Client {
    lightning: lnrpc::lightning_client::LightningClient<Service>,
    router: routerrpc::router_client::RouterClient<Service>,
    invoices: invoicesrpc::invoices_client::InvoicesClient<Service>,
}

impl Client {
    pub(crate) fn lightning(&mut self) -> &mut lnrpc::lightning_client::LightningClient<Service> {
        &mut self.lightning
    }

    pub(crate) fn router(&mut self) -> &mut routerrpc::router_client::RouterClient<Service> {
        &mut self.router
    }

    pub(crate) fn invoices(
        &mut self,
    ) -> &mut invoicesrpc::invoices_client::InvoicesClient<Service> {
        &mut self.invoices
    }
}

/// Adds the hex macaroon as the `macaroon` header of every call.
#[derive(Clone)]
pub(crate) struct Macaroon(MetadataValue<Ascii>);

impl Interceptor for Macaroon {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("macaroon", self.0.clone());
        Ok(req)
    }
}

fn auth(msg: String) -> LnError {
    LnError::new(LnErrorKind::Auth, msg)
}

/// Reads the certificate and macaroon and builds the clients. No connection is made here: the
/// first call dials (and every call after a lost connection dials again).
///
/// # Errors
/// [`LnErrorKind::Auth`] when a file cannot be read or the certificate file holds no PEM
/// certificate, [`LnErrorKind::Other`] for an address that is not a URI.
pub(crate) async fn connect(
    host: &str,
    cert_path: &Path,
    macaroon_path: &Path,
) -> Result<Client, LnError> {
    let origin = Uri::from_str(host).map_err(|e| {
        LnError::new(
            LnErrorKind::Other,
            format!("invalid lnd address {host:?}: {e}"),
        )
    })?;
    let verifier = PinnedCert::load(cert_path).await?;
    let macaroon = tokio::fs::read(macaroon_path).await.map_err(|e| {
        auth(format!(
            "cannot read the lnd macaroon {}: {e}",
            macaroon_path.display()
        ))
    })?;
    let macaroon = MetadataValue::try_from(hex::encode(macaroon))
        .map_err(|e| auth(format!("unusable lnd macaroon: {e}")))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| auth(format!("cannot set up TLS for lnd: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();

    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    // The https scheme is handled by the TLS layer above this connector.
    tcp.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http2()
        .wrap_connector(tcp);
    // HTTP/2 only: the pool keeps one connection to LND and multiplexes every call and stream
    // on it (concurrent first calls wait for the one dial instead of racing their own).
    let http = HttpClient::builder(TokioExecutor::new())
        .http2_only(true)
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .http2_keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build(connector);
    let svc = InterceptedService::new(http, Macaroon(macaroon));
    Ok(Client {
        lightning: lnrpc::lightning_client::LightningClient::with_origin(
            svc.clone(),
            origin.clone(),
        ),
        router: routerrpc::router_client::RouterClient::with_origin(svc.clone(), origin.clone()),
        invoices: invoicesrpc::invoices_client::InvoicesClient::with_origin(svc, origin),
    })
}

/// Accepts exactly the certificates of LND's `tls.cert`: the chain the server presents (leaf
/// and intermediates, in any order) must be the file's certificates, no more, no fewer. Names,
/// validity dates and CAs are not looked at (LND's certificate is self-signed and often names
/// no host the daemon dials); the handshake signatures are checked as usual.
#[derive(Debug)]
struct PinnedCert {
    /// The file's certificates (DER), sorted.
    certs: Vec<Vec<u8>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCert {
    async fn load(path: &Path) -> Result<PinnedCert, LnError> {
        let pem = tokio::fs::read(path).await.map_err(|e| {
            auth(format!(
                "cannot read the lnd certificate {}: {e}",
                path.display()
            ))
        })?;
        let mut certs = CertificateDer::pem_slice_iter(&pem)
            .map(|c| c.map(|c| c.as_ref().to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                auth(format!(
                    "cannot parse the lnd certificate {}: {e}",
                    path.display()
                ))
            })?;
        if certs.is_empty() {
            return Err(auth(format!(
                "the lnd certificate file {} holds no PEM certificate",
                path.display()
            )));
        }
        certs.sort();
        Ok(PinnedCert {
            certs,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        })
    }

    fn matches(&self, end_entity: &[u8], intermediates: &[&[u8]]) -> bool {
        let mut presented: Vec<&[u8]> = Vec::with_capacity(intermediates.len() + 1);
        presented.push(end_entity);
        presented.extend_from_slice(intermediates);
        presented.sort();
        presented.len() == self.certs.len()
            && presented
                .iter()
                .zip(&self.certs)
                .all(|(p, ours)| *p == ours.as_slice())
    }
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let intermediates: Vec<&[u8]> = intermediates.iter().map(|c| c.as_ref()).collect();
        if self.matches(end_entity.as_ref(), &intermediates) {
            Ok(ServerCertVerified::assertion())
        } else {
            // "certificate" in the text: convert.rs classifies the failed call as an auth error.
            Err(rustls::Error::General(
                "the server's certificate is not the pinned lnd certificate (tls.cert)".to_owned(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned(certs: &[&[u8]]) -> PinnedCert {
        let mut certs: Vec<Vec<u8>> = certs.iter().map(|c| c.to_vec()).collect();
        certs.sort();
        PinnedCert {
            certs,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }

    #[test]
    fn the_pin_is_the_whole_chain_in_any_order() {
        let p = pinned(&[b"leaf", b"ca"]);
        assert!(p.matches(b"leaf", &[b"ca"]));
        assert!(p.matches(b"ca", &[b"leaf"]));
        assert!(!p.matches(b"leaf", &[]), "a shorter chain");
        assert!(!p.matches(b"leaf", &[b"ca", b"extra"]), "a longer chain");
        assert!(!p.matches(b"other", &[b"ca"]), "another leaf");
        let single = pinned(&[b"leaf"]);
        assert!(single.matches(b"leaf", &[]));
        assert!(!single.matches(b"leaf", &[b"leaf"]), "the count matters");
    }
}
