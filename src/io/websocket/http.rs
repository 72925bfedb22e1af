//! The HTTP side of a WebSocket listener, pure: reads one request head and answers it
//! with the opening handshake (RFC 6455 section 4.2), one of the web client's static
//! files, or an error status. Parsing is `httparse`'s; the decisions (which
//! subprotocol, which origins, which files) are here. Nothing touches a socket.

use ring::digest;
use std::fmt::Write as _;

/// Largest request head read before answering 431: browsers send 1-2 KiB, and a
/// cookie-laden head stays well under this.
pub const MAX_REQUEST_HEAD: usize = 8 << 10;
/// Most header lines parsed.
const MAX_HEADERS: usize = 48;
/// The GUID every accept key is derived with (RFC 6455 section 1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The IRCv3 subprotocols (<https://ircv3.net/specs/extensions/websocket>): binary
/// frames carry bytes as they are; text frames must be UTF-8.
const BINARY_SUBPROTOCOL: &str = "binary.ircv3.net";
const TEXT_SUBPROTOCOL: &str = "text.ircv3.net";

/// The web client (`web/`), embedded so the binary serves it with nothing beside it.
const ASSETS: [(&str, &str, &[u8]); 3] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../../../web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../web/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../web/style.css"),
    ),
];

/// What the listener's settings allow; borrowed from the config for each request.
pub struct Policy<'a> {
    /// Origins a browser page may connect from (`--websocket-origins`); empty: any.
    pub origins: &'a [String],
}

/// What one request head asks for, once it has all arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A valid WebSocket upgrade: send `response`, then speak frames.
    Upgrade {
        /// The `101 Switching Protocols` head.
        response: Vec<u8>,
        /// `binary.ircv3.net` was chosen: lines go out as binary frames.
        binary: bool,
        /// Bytes of the request head, consumed.
        consumed: usize,
        /// `X-Forwarded-For` (its last address) or `Forwarded` (its last `for=`), for
        /// a trusted proxy's connection.
        forwarded_for: Option<String>,
    },
    /// Anything else: send `response` (a page or an error status), then close.
    Close {
        /// The whole response, head and body.
        response: Vec<u8>,
        /// Why, for the log; `None` for a page served.
        refusal: Option<&'static str>,
    },
}

/// Reads the request head at the start of `data`: `None` until it has all arrived.
pub fn answer(data: &[u8], policy: &Policy<'_>) -> Option<Answer> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let consumed = match request.parse(data) {
        Ok(httparse::Status::Complete(consumed)) => consumed,
        Ok(httparse::Status::Partial) if data.len() <= MAX_REQUEST_HEAD => return None,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Some(refuse(431, "Request Header Fields Too Large"));
        }
        Err(_) => return Some(refuse(400, "Bad Request")),
    };
    if consumed > MAX_REQUEST_HEAD {
        return Some(refuse(431, "Request Header Fields Too Large"));
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .filter(|header| header.name.eq_ignore_ascii_case(name))
            .filter_map(|header| std::str::from_utf8(header.value).ok())
            .map(str::trim)
            .collect::<Vec<&str>>()
    };
    let tokens = |name: &str| {
        header(name)
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .map(str::to_owned)
            .collect::<Vec<String>>()
    };
    if request.method != Some("GET") {
        return Some(refuse(405, "Method Not Allowed"));
    }
    let path = request.path.unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let is_upgrade = tokens("upgrade")
        .iter()
        .any(|token| token.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return Some(serve(path));
    }
    // RFC 6455 section 4.2.1: a GET, HTTP/1.1, Connection: Upgrade, version 13 and a key.
    let has_connection_upgrade = tokens("connection")
        .iter()
        .any(|token| token.eq_ignore_ascii_case("upgrade"));
    let key = header("sec-websocket-key").first().copied().unwrap_or("");
    if request.version != Some(1) || !has_connection_upgrade || key.is_empty() {
        return Some(refuse(400, "Bad Request"));
    }
    if header("sec-websocket-version").first().copied() != Some("13") {
        // Section 4.4: say which version this server speaks.
        let mut response = status_head(426, "Upgrade Required", "text/plain", 0);
        response.splice(
            response.len() - 2..response.len() - 2,
            *b"Sec-WebSocket-Version: 13\r\n",
        );
        return Some(Answer::Close {
            response,
            refusal: Some("unsupported WebSocket version"),
        });
    }
    if let Some(origin) = header("origin").first() {
        if !policy.origins.is_empty() && !policy.origins.iter().any(|allowed| allowed == origin) {
            return Some(refuse(403, "Forbidden"));
        }
    }
    // The client's order decides (IRCv3 websocket: "the first one the server supports").
    let chosen = tokens("sec-websocket-protocol")
        .into_iter()
        .find(|offered| offered == BINARY_SUBPROTOCOL || offered == TEXT_SUBPROTOCOL);
    let mut response = String::from(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    let _ = write!(response, "Sec-WebSocket-Accept: {}\r\n", accept_key(key));
    if let Some(chosen) = &chosen {
        let _ = write!(response, "Sec-WebSocket-Protocol: {chosen}\r\n");
    }
    response.push_str("\r\n");
    let forwarded_for = header("x-forwarded-for")
        .last()
        .and_then(|value| value.rsplit(',').next())
        .map(str::trim)
        .or_else(|| {
            header("forwarded")
                .last()
                .and_then(|value| last_forwarded_for(value))
        })
        .map(str::to_owned);
    Some(Answer::Upgrade {
        response: response.into_bytes(),
        binary: chosen.as_deref() == Some(BINARY_SUBPROTOCOL),
        consumed,
        forwarded_for,
    })
}

/// The last `for=` of a `Forwarded` header (RFC 7239): the hop the nearest proxy saw,
/// without quotes, brackets or port.
fn last_forwarded_for(value: &str) -> Option<&str> {
    let element = value.rsplit(',').next()?;
    let node = element.split(';').find_map(|pair| {
        let (name, node) = pair.trim().split_once('=')?;
        name.eq_ignore_ascii_case("for").then_some(node)
    })?;
    let node = node.trim_matches('"');
    Some(match node.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(bracketed),
        None => node.split(':').next().unwrap_or(node),
    })
}

/// `Sec-WebSocket-Accept` for a client's key: base64(SHA-1(key + GUID)).
fn accept_key(key: &str) -> String {
    use base64::Engine;
    let digest = digest::digest(
        &digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{ACCEPT_GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// One of the web client's files, or 404.
fn serve(path: &str) -> Answer {
    let path = if path == "/index.html" { "/" } else { path };
    match ASSETS.iter().find(|(asset, _, _)| *asset == path) {
        Some((_, content_type, body)) => {
            let mut response = status_head(200, "OK", content_type, body.len());
            response.extend_from_slice(body);
            Answer::Close {
                response,
                refusal: None,
            }
        }
        None => refuse(404, "Not Found"),
    }
}

/// An error status with its reason as a one-line body, then close.
fn refuse(code: u16, reason: &'static str) -> Answer {
    Answer::Close {
        response: refusal(code, reason),
        refusal: Some(reason),
    }
}

/// The whole response for an error status: head, and the reason as the body.
pub fn refusal(code: u16, reason: &str) -> Vec<u8> {
    let body = format!("{reason}\n");
    let mut response = status_head(code, reason, "text/plain; charset=utf-8", body.len());
    response.extend_from_slice(body.as_bytes());
    response
}

/// A response head that closes the connection after its body. The page may load
/// scripts and styles from this server only, and connect back to it.
fn status_head(code: u16, reason: &str, content_type: &str, length: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\
         Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:\r\n\
         Connection: close\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: Policy<'static> = Policy { origins: &[] };

    fn upgrade_request(extra: &str) -> String {
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    fn response_text(answer: &Answer) -> String {
        match answer {
            Answer::Upgrade { response, .. } | Answer::Close { response, .. } => {
                String::from_utf8_lossy(response).into_owned()
            }
        }
    }

    #[test]
    fn the_rfc_sample_key_gets_the_rfc_accept_value() {
        // RFC 6455 section 1.3's worked example.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn the_client_order_picks_the_subprotocol() {
        let request =
            upgrade_request("Sec-WebSocket-Protocol: foo, text.ircv3.net, binary.ircv3.net\r\n");
        let answer = answer(request.as_bytes(), &ANY).unwrap();
        assert!(
            matches!(answer, Answer::Upgrade { binary: false, consumed, .. } if consumed == request.len())
        );
        assert!(response_text(&answer).contains("Sec-WebSocket-Protocol: text.ircv3.net\r\n"));
        let request = upgrade_request("Sec-WebSocket-Protocol: binary.ircv3.net\r\n");
        assert!(matches!(
            answer_of(&request),
            Answer::Upgrade { binary: true, .. }
        ));
        let plain = answer_of(&upgrade_request(""));
        assert!(!response_text(&plain).contains("Sec-WebSocket-Protocol"));
    }

    fn answer_of(request: &str) -> Answer {
        answer(request.as_bytes(), &ANY).expect("a complete head")
    }

    #[test]
    fn an_incomplete_head_waits_and_an_endless_one_is_refused() {
        assert_eq!(answer(b"GET / HTTP/1.1\r\nHost:", &ANY), None);
        let endless = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_REQUEST_HEAD));
        assert!(response_text(&answer_of(&endless)).starts_with("HTTP/1.1 431 "));
        assert!(response_text(&answer_of("\x16\x03\x01 tls\r\n\r\n")).starts_with("HTTP/1.1 400 "));
    }

    #[test]
    fn a_foreign_origin_is_refused_when_origins_are_listed() {
        let listed = ["https://chat.example".to_owned()];
        let policy = Policy { origins: &listed };
        let foreign = upgrade_request("Origin: https://evil.example\r\n");
        assert!(response_text(&answer(foreign.as_bytes(), &policy).unwrap())
            .starts_with("HTTP/1.1 403 "));
        let ours = upgrade_request("Origin: https://chat.example\r\n");
        assert!(matches!(
            answer(ours.as_bytes(), &policy),
            Some(Answer::Upgrade { .. })
        ));
    }

    #[test]
    fn plain_gets_serve_the_client_and_nothing_else() {
        assert!(response_text(&answer_of("GET / HTTP/1.1\r\n\r\n")).contains("<html"));
        assert!(
            response_text(&answer_of("GET /app.js HTTP/1.1\r\n\r\n")).starts_with("HTTP/1.1 200 ")
        );
        assert!(
            response_text(&answer_of("GET /../etc/passwd HTTP/1.1\r\n\r\n"))
                .starts_with("HTTP/1.1 404 ")
        );
        assert!(response_text(&answer_of("POST / HTTP/1.1\r\n\r\n")).starts_with("HTTP/1.1 405 "));
    }

    #[test]
    fn the_forwarded_address_is_the_nearest_proxys() {
        let request = upgrade_request("X-Forwarded-For: 10.0.0.1, 203.0.113.7\r\n");
        assert!(
            matches!(answer_of(&request), Answer::Upgrade { forwarded_for: Some(ip), .. } if ip == "203.0.113.7")
        );
        let request = upgrade_request("Forwarded: for=192.0.2.1, for=\"[2001:db8::1]:4711\"\r\n");
        assert!(
            matches!(answer_of(&request), Answer::Upgrade { forwarded_for: Some(ip), .. } if ip == "2001:db8::1")
        );
    }
}
