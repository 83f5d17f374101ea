//! A minimal HTTP/1.1 keep-alive client, plain or over TLS: one request at a time per connection,
//! responses framed by `Content-Length`. Small enough that the generator is never the
//! bottleneck.

use rustls::pki_types::ServerName;
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Where requests go: `http://host[:port]/path` or `https://…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`, for connecting.
    pub authority: String,
    /// The `Host` header value.
    pub host: String,
    pub path: String,
    /// `https://`: connections speak TLS.
    pub tls: bool,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => {
                return Err(format!(
                    "{url:?}: only http:// and https:// URLs are supported (point it at hookstream's own port)"
                ))
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:{}", if tls { 443 } else { 80 })
        };
        Ok(Self {
            authority: with_port,
            host: authority.to_string(),
            path: path.to_string(),
            tls,
        })
    }

    /// The host name to verify the server's certificate against.
    fn server_name(&self) -> io::Result<ServerName<'static>> {
        let host = self
            .host
            .rsplit_once(':')
            .filter(|(_, port)| port.parse::<u16>().is_ok())
            .map_or(self.host.as_str(), |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_string()).map_err(|e| invalid_input(&e.to_string()))
    }
}

/// A byte stream, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server will close the connection (`Connection: close`, or no length given).
    pub close: bool,
}

pub struct Connection {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
}

impl Connection {
    /// Connects to `target`, with a TLS handshake when it is `https://` (`tls` then says whom to
    /// trust).
    pub async fn open(
        target: &Target,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> io::Result<Self> {
        let tcp = TcpStream::connect(&target.authority).await?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match (target.tls, tls) {
            (false, _) => Box::new(tcp),
            (true, Some(config)) => Box::new(
                tokio_rustls::TlsConnector::from(config.clone())
                    .connect(target.server_name()?, tcp)
                    .await?,
            ),
            (true, None) => return Err(invalid_input("an https:// URL needs a TLS configuration")),
        };
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends one complete request and reads its response.
    pub async fn round_trip(&mut self, request: &[u8]) -> io::Result<Response> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        let head_end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("response head too large"));
            }
            self.fill().await?;
        };
        let head = parse_head(&self.buf[..head_end])?;
        match head.content_length {
            Some(length) => {
                while self.buf.len() < head_end + length {
                    self.fill().await?;
                }
            }
            // No length: the body runs to the end of the connection.
            None => while self.stream.read_buf(&mut self.buf).await? > 0 {},
        }
        Ok(Response {
            status: head.status,
            close: head.close || head.content_length.is_none(),
        })
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        match self.stream.read_buf(&mut self.buf).await? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response was complete",
            )),
            _ => Ok(()),
        }
    }
}

struct Head {
    status: u16,
    content_length: Option<usize>,
    close: bool,
}

fn parse_head(head: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid("malformed status line"))?;
    let mut content_length = None;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().map_err(|_| invalid("bad content-length"))?);
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid("chunked responses are not supported"));
        }
    }
    // 1xx, 204 and 304 answers never have a body, whatever their headers say (RFC 9112 6.3).
    if status < 200 || status == 204 || status == 304 {
        content_length = Some(0);
    }
    Ok(Head {
        status,
        content_length,
        close,
    })
}

fn invalid_input(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_and_without_port() {
        let t = Target::parse("http://127.0.0.1:8080/webhooks/livesession").expect("parses");
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.path, "/webhooks/livesession");
        let t = Target::parse("http://example.com").expect("parses");
        assert_eq!(t.authority, "example.com:80");
        assert_eq!(t.path, "/");
        assert!(!t.tls);
        let t = Target::parse("https://example.com/hooks").expect("parses");
        assert_eq!(t.authority, "example.com:443");
        assert!(t.tls);
        assert_eq!(
            t.server_name().ok(),
            ServerName::try_from("example.com").ok()
        );
        assert!(Target::parse("ftp://example.com/").is_err());
        assert!(Target::parse("http:///x").is_err());
    }

    #[test]
    fn heads_are_parsed() {
        let h = parse_head(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 12\r\n\r\n").expect("ok");
        assert_eq!(
            (h.status, h.content_length, h.close),
            (401, Some(12), false)
        );
        let h = parse_head(b"HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n").expect("ok");
        assert_eq!(
            (h.status, h.content_length, h.close),
            (204, Some(0), false),
            "a 204 has no body, and keeps the connection"
        );
        let h = parse_head(b"HTTP/1.1 503 x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .expect("ok");
        assert!(h.close);
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }
}
