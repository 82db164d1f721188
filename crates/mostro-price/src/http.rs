//! A small, strict HTTPS GET client (hyper 1 over tokio + rustls/ring): one request per
//! connection, no redirects, bounded time and size, optional refusal of non-public addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::{Host, Url};

/// Limits and address rules of one HTTP client.
#[derive(Clone, Debug)]
pub struct HttpPolicy {
    /// Limit on DNS resolution plus TCP connect (and the TLS handshake).
    pub connect_timeout: Duration,
    /// Limit on the whole request, from resolution to the last body byte.
    pub total_timeout: Duration,
    /// Largest accepted response body, bytes.
    pub max_body_bytes: usize,
    /// Refuse hosts that resolve to private, loopback, link-local, unique-local or otherwise
    /// non-public addresses (SSRF protection).
    pub refuse_private: bool,
    /// Tests only: allow plain `http://` to loopback IP addresses and allow loopback addresses
    /// even when `refuse_private` is set. Never set in production.
    pub allow_insecure_loopback: bool,
    /// Extra trusted root certificates (DER), added to the Mozilla roots (tests, private CAs).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            refuse_private: false,
            allow_insecure_loopback: false,
            extra_roots: Vec::new(),
        }
    }
}

/// Why an HTTP request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The URL cannot be used (bad syntax, credentials, unsupported scheme).
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// Plain `http://` where TLS is required.
    #[error("TLS required: {0}")]
    InsecureScheme(String),
    /// The host resolves to an address that is not publicly routable.
    #[error("refused non-public address {0}")]
    PrivateAddress(String),
    /// DNS, TCP or TLS failure.
    #[error("not reachable: {0}")]
    Unreachable(String),
    /// A time limit was reached.
    #[error("timed out")]
    Timeout,
    /// The body is larger than allowed.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The server answered with a redirect; redirects are never followed.
    #[error("redirect refused (to {0})")]
    Redirect(String),
    /// The server answered with a non-success status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The server spoke broken HTTP.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Whether an address is publicly routable (not private, loopback, link-local, unique-local,
/// shared, documentation, multicast, reserved or unspecified; v4 addresses embedded in v6
/// forms are checked as v4).
#[must_use]
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19)))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| {
        let [h1, h2] = hi.to_be_bytes();
        let [l1, l2] = lo.to_be_bytes();
        Ipv4Addr::new(h1, h2, l1, l2)
    };
    // NAT64 64:ff9b::/96 and 6to4 2002::/16 reach v4 hosts.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded_v4(s[1], s[2]));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard 100::/64
        || s[0..6] == [0, 0, 0, 0, 0, 0]) // v4-compatible and other ::/96 forms
}

/// A strict GET-only HTTP/1.1 client.
#[derive(Clone)]
pub struct HttpClient {
    policy: HttpPolicy,
    tls: TlsConnector,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl HttpClient {
    /// A client with `policy`, trusting the Mozilla roots plus `policy.extra_roots`.
    ///
    /// # Errors
    /// When the TLS configuration cannot be built (a bad extra root).
    pub fn new(policy: HttpPolicy) -> Result<Self, HttpError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for c in &policy.extra_roots {
            roots
                .add(c.clone())
                .map_err(|e| HttpError::InvalidUrl(format!("bad extra root certificate: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::Protocol(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(HttpClient {
            policy,
            tls: TlsConnector::from(Arc::new(cfg)),
        })
    }

    /// The policy in force.
    #[must_use]
    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// Checks that `url` may be requested under the policy (scheme, credentials, host form)
    /// without any network access.
    ///
    /// # Errors
    /// `InvalidUrl` or `InsecureScheme`.
    pub fn check_url(&self, url: &Url) -> Result<(), HttpError> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HttpError::InvalidUrl("credentials in URL".into()));
        }
        let host = url
            .host()
            .ok_or_else(|| HttpError::InvalidUrl(format!("no host in {url}")))?;
        match url.scheme() {
            "https" => Ok(()),
            "http" => {
                let loopback = match host {
                    Host::Ipv4(ip) => ip.is_loopback(),
                    Host::Ipv6(ip) => ip.is_loopback(),
                    Host::Domain(_) => false,
                };
                if self.policy.allow_insecure_loopback && loopback {
                    Ok(())
                } else {
                    Err(HttpError::InsecureScheme(url.to_string()))
                }
            },
            other => Err(HttpError::InvalidUrl(format!("unsupported scheme {other}"))),
        }
    }

    fn address_allowed(&self, ip: IpAddr) -> bool {
        !self.policy.refuse_private
            || is_public_ip(ip)
            || (self.policy.allow_insecure_loopback && ip.is_loopback())
    }

    /// GETs `url` and returns the body of a 2xx answer.
    ///
    /// # Errors
    /// Any [`HttpError`]; redirects are errors.
    pub async fn get(&self, url: &Url) -> Result<Vec<u8>, HttpError> {
        tokio::time::timeout(self.policy.total_timeout, self.get_inner(url))
            .await
            .map_err(|_| HttpError::Timeout)?
    }

    async fn get_inner(&self, url: &Url) -> Result<Vec<u8>, HttpError> {
        self.check_url(url)?;
        let host = url
            .host()
            .ok_or_else(|| HttpError::InvalidUrl(format!("no host in {url}")))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| HttpError::InvalidUrl(format!("no port for {url}")))?;
        let connect = async {
            let addrs: Vec<SocketAddr> = match &host {
                Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(*ip), port)],
                Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(*ip), port)],
                Host::Domain(d) => tokio::net::lookup_host((*d, port))
                    .await
                    .map_err(|e| HttpError::Unreachable(format!("cannot resolve {d}: {e}")))?
                    .collect(),
            };
            if addrs.is_empty() {
                return Err(HttpError::Unreachable(format!("{host} has no address")));
            }
            // Every address must be allowed: a name that mixes public and private answers is
            // refused outright. We then connect only to the checked addresses (no re-resolution).
            if let Some(bad) = addrs.iter().find(|a| !self.address_allowed(a.ip())) {
                return Err(HttpError::PrivateAddress(format!("{host} -> {}", bad.ip())));
            }
            let mut last = String::new();
            for a in &addrs {
                match TcpStream::connect(a).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = format!("{a}: {e}"),
                }
            }
            Err(HttpError::Unreachable(last))
        };
        let tcp = tokio::time::timeout(self.policy.connect_timeout, connect)
            .await
            .map_err(|_| HttpError::Timeout)??;
        let _ = tcp.set_nodelay(true);
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        if url.scheme() == "https" {
            let name = match &host {
                Host::Ipv4(ip) => ServerName::IpAddress(IpAddr::V4(*ip).into()),
                Host::Ipv6(ip) => ServerName::IpAddress(IpAddr::V6(*ip).into()),
                Host::Domain(d) => ServerName::try_from((*d).to_owned())
                    .map_err(|e| HttpError::InvalidUrl(format!("bad host name {d}: {e}")))?,
            };
            let tls =
                tokio::time::timeout(self.policy.connect_timeout, self.tls.connect(name, tcp))
                    .await
                    .map_err(|_| HttpError::Timeout)?
                    .map_err(|e| HttpError::Unreachable(format!("TLS with {host}: {e}")))?;
            self.exchange(tls, &host_header, &target).await
        } else {
            self.exchange(tcp, &host_header, &target).await
        }
    }

    async fn exchange<S>(&self, io: S, host: &str, target: &str) -> Result<Vec<u8>, HttpError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| HttpError::Protocol(e.to_string()))?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let _guard = AbortOnDrop(task.abort_handle());
        let req = http::Request::get(target)
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "mostro-rs")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| HttpError::InvalidUrl(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| HttpError::Protocol(e.to_string()))?;
        let status = resp.status();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .chars()
                .take(200)
                .collect();
            return Err(HttpError::Redirect(to));
        }
        if !status.is_success() {
            return Err(HttpError::Status(status.as_u16()));
        }
        let max = self.policy.max_body_bytes;
        let declared = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(HttpError::TooLarge(max));
        }
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| HttpError::Protocol(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if buf.len().saturating_add(data.len()) > max {
                    return Err(HttpError::TooLarge(max));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_private_addresses() {
        for ok in ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "::ffff:1.1.1.1"] {
            assert!(is_public_ip(ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:db8::1",
            "ff02::1",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(!is_public_ip(ip), "{bad}");
        }
    }
}
