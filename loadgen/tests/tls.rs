//! Scenarios over TLS (`--tls`): a small rustls server with an rcgen certificate in
//! front of the mock IRC server, over real loopback TCP. Checks that every delivery
//! is verified through TLS, that `--tls-ca` and `--tls-insecure` are honoured, and
//! that an untrusted certificate is one clear error.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::Parser;
use loadgen::cli::Cli;
use loadgen::report::Report;
use loadgen::scenario::{self, Scenario};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A TLS front for `backend` on 127.0.0.1 (ephemeral port), on its own thread for the
/// rest of the test process; returns its address and the PEM file of its certificate.
fn start_tls_front(backend: SocketAddr, tag: &str) -> (SocketAddr, PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("certificate");
    let dir = std::env::temp_dir().join(format!("loadgen-tls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pem = dir.join("cert.pem");
    std::fs::write(&pem, certified.cert.pem()).expect("write certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(certified.cert.der().to_vec())],
        key,
    )
    .expect("server certificate");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that does not trust us aborts the handshake: not an error here.
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut plain) = TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = plain.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
    });
    (addr, pem)
}

fn run(args: &[&str]) -> anyhow::Result<Report> {
    let mut argv = vec!["loadgen"];
    argv.extend_from_slice(args);
    let command = Cli::try_parse_from(argv)
        .expect("valid command line")
        .command;
    let (scenario, common): (Scenario, _) =
        Scenario::from_command(command).unwrap_or_else(|other| panic!("not a scenario: {other:?}"));
    scenario::run(&scenario, &common)
}

#[test]
fn fanout_over_tls_verifies_every_delivery() {
    let (backend, mock) = common::start(common::Faults::default());
    let (addr, pem) = start_tls_front(backend, "fanout");
    let addr = addr.to_string();
    let pem = pem.display().to_string();
    let report = run(&[
        "fanout",
        "--addr",
        &addr,
        "--tls",
        "--tls-ca",
        &pem,
        "--clients",
        "8",
        "--senders",
        "2",
        "--rate",
        "200",
        "--warmup",
        "200ms",
        "--duration",
        "500ms",
        "--grace",
        "2s",
        "--threads",
        "2",
        "--quiet",
    ])
    .expect("run completes");
    assert!(report.ok, "errors: {:?}", report.errors);
    let step = &report.steps[0];
    assert_eq!(step.counts.expected, step.counts.sent * 7);
    assert_eq!(step.counts.delivered, step.counts.expected);
    assert_eq!(
        step.counts.delivered,
        mock.deliveries.load(Ordering::Relaxed)
    );
    assert_eq!(report.params["tls"], serde_json::json!(true));
}

#[test]
fn tls_insecure_accepts_a_self_signed_server() {
    let (backend, _mock) = common::start(common::Faults::default());
    let (addr, _pem) = start_tls_front(backend, "insecure");
    let addr = addr.to_string();
    let report = run(&[
        "connect",
        "--addr",
        &addr,
        "--tls",
        "--tls-insecure",
        "--clients",
        "10",
        "--quiet",
    ])
    .expect("run completes");
    assert!(report.ok, "errors: {:?}", report.errors);
    assert_eq!(report.steps[0].latency.count, 10);
}

#[test]
fn an_untrusted_certificate_is_one_clear_error() {
    let (backend, _mock) = common::start(common::Faults::default());
    let (addr, _pem) = start_tls_front(backend, "untrusted");
    let (_other_addr, other_pem) = start_tls_front(backend, "other");
    let addr = addr.to_string();
    let other_pem = other_pem.display().to_string();
    let e = run(&[
        "connect",
        "--addr",
        &addr,
        "--tls",
        "--tls-ca",
        &other_pem,
        "--clients",
        "2",
        "--quiet",
    ])
    .expect_err("the server's certificate is not the trusted one");
    let message = format!("{e:#}");
    assert!(message.contains("TLS handshake"), "{message}");
    assert!(message.to_lowercase().contains("certificate"), "{message}");
}
