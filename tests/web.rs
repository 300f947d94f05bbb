//! `--web.config.file`: TLS (with certificates re-read from disk), client
//! certificates, basic auth, and the server holding up under load and
//! against slow or oversized clients.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        Ca(CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap())
    }

    /// A leaf certificate and key (PEM) for `names`.
    fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        let cert = p.signed_by(&key, &self.0).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn pem(&self) -> String {
        self.0.pem()
    }

    /// Writes a server certificate for 127.0.0.1 signed by this CA as
    /// `server.key` and `server.crt` in `dir` (key first, as a renewal does).
    fn install_server_cert(&self, dir: &Path) {
        let (cert, key) = self.issue(&["127.0.0.1", "localhost"]);
        write(dir, "server.key", &key);
        write(dir, "server.crt", &cert);
    }
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn client(ca: &Ca, identity: Option<(String, String)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5));
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn start(web_config: &str, dir: &Path) -> (Exporter, nexrender_simulator::RunningSimulator) {
    let sim = scripted_simulator().await;
    let web = write(dir, "web.yaml", web_config);
    let exp = Exporter::start(
        &format!("accounts:\n{}", account_yaml("main", &sim)),
        &["--web.config.file", web.to_str().unwrap()],
    );
    (exp, sim)
}

async fn until_ok(c: &reqwest::Client, url: &str) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.get(url).send().await {
            Ok(r) => return r,
            Err(e) if Instant::now() > deadline => panic!("{url}: {e:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn tls_serves_metrics_and_picks_up_a_new_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (Ca::new("old ca"), Ca::new("new ca"));
    old_ca.install_server_cert(dir.path());
    let (exp, _sim) = start("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\n", dir.path()).await;
    let url = format!("https://127.0.0.1:{}/metrics", exp.port);
    let r = until_ok(&client(&old_ca, None), &url).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("nexrender_up"));
    assert!(
        reqwest::get(exp.url("/metrics"))
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true),
        "plain HTTP is not served"
    );
    assert!(
        client(&new_ca, None).get(&url).send().await.is_err(),
        "not yet the new certificate"
    );

    // Rotate the files in place, as cert-manager or certbot would.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    new_ca.install_server_cert(dir.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = client(&new_ca, None).get(&url).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served:\n{}",
            exp.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        client(&old_ca, None).get(&url).send().await.is_err(),
        "the old certificate is gone"
    );
}

#[tokio::test]
async fn client_certificates_are_required_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    ca.install_server_cert(dir.path());
    write(dir.path(), "ca.crt", &ca.pem());
    let (exp, _sim) = start(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
        dir.path(),
    )
    .await;
    let url = format!("https://127.0.0.1:{}/metrics", exp.port);
    let prometheus = client(&ca, Some(ca.issue(&["prometheus"])));
    assert_eq!(until_ok(&prometheus, &url).await.status(), 200);
    assert!(
        client(&ca, None).get(&url).send().await.is_err(),
        "no client certificate, no answer"
    );
    let stranger = Ca::new("other");
    assert!(
        client(&ca, Some(stranger.issue(&["x"])))
            .get(&url)
            .send()
            .await
            .is_err(),
        "a certificate from another CA is refused"
    );
}

#[tokio::test]
async fn basic_auth_refuses_missing_and_wrong_passwords_with_401() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("s3cret-pass", 4).unwrap();
    let (exp, _sim) = start(
        &format!("basic_auth_users:\n  prometheus: '{hash}'\n"),
        dir.path(),
    )
    .await;
    let c = reqwest::Client::new();
    let url = exp.url("/metrics");
    let r = until_ok(&c, &url).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"nexrender-exporter\""
    );
    assert_eq!(
        c.get(&url)
            .basic_auth("prometheus", Some("wrong"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        c.get(&url)
            .basic_auth("nobody", Some("s3cret-pass"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    for _ in 0..3 {
        assert_eq!(
            c.get(&url)
                .basic_auth("prometheus", Some("s3cret-pass"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        c.get(exp.url("/")).send().await.unwrap().status(),
        401,
        "every path is protected"
    );
}

#[tokio::test]
async fn the_annotated_example_web_config_loads() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    ca.install_server_cert(dir.path());
    write(dir.path(), "ca.crt", &ca.pem());
    let example = std::fs::read_to_string("config/web-config.example.yaml").unwrap();
    let path = write(dir.path(), "web.yaml", &example);
    let web = nexrender_exporter::webconfig::load(&path).unwrap();
    assert!(web.tls.is_some());
    let auth = web.auth.unwrap();
    use base64::Engine;
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("prometheus:change-me")
    );
    assert!(auth.check(Some(&good)).await);
    assert!(!auth.check(Some("Basic cHJvbWV0aGV1czpubw==")).await);
}

#[test]
fn a_bad_web_config_stops_the_exporter_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (body, says) in [
        ("tls_server_config:\n  cert: a.crt\n", "cert"),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
            "missing.crt",
        ),
        (
            "basic_auth_users:\n  prometheus: plaintext\n",
            "basic_auth_users.prometheus",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n",
            "client_auth_type",
        ),
    ] {
        let web = write(dir.path(), "web.yaml", body);
        let cfg = yaml_file("accounts: [{name: a, token: x}]\n");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nexrender-exporter"))
            .arg("--config")
            .arg(cfg.path())
            .arg("--web.config.file")
            .arg(&web)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{body}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("web.yaml") && err.contains(says),
            "{body} -> {err}"
        );
    }
}

async fn raw_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test]
async fn metrics_keep_answering_under_1000_concurrent_scrapes() {
    let sim = scripted_simulator().await;
    let exp = Exporter::start(&format!("accounts:\n{}", account_yaml("main", &sim)), &[]);
    exp.polls("main", 1).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let port = exp.port;
        tasks.spawn(async move { raw_get(port, "/metrics").await });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        let body = r.unwrap().expect("connection");
        assert!(
            body.starts_with("HTTP/1.1 200"),
            "{}",
            &body[..body.len().min(200)]
        );
        assert!(body.contains("nexrender_up{account=\"main\"} 1"));
        ok += 1;
    }
    assert_eq!(ok, 1000);
}

#[tokio::test]
async fn idle_and_oversized_clients_do_not_block_scrapes() {
    let sim = scripted_simulator().await;
    let exp = Exporter::start(&format!("accounts:\n{}", account_yaml("main", &sim)), &[]);
    exp.polls("main", 1).await;
    // 300 connections that never send a byte...
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", exp.port))
                .await
                .unwrap(),
        );
    }
    // ...do not stop a scrape.
    let body = raw_get(exp.port, "/metrics").await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"));
    // Headers larger than 16 KiB are refused, not buffered without end.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", exp.port))
        .await
        .unwrap();
    let big = "x".repeat(64 * 1024);
    let _ = s
        .write_all(format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    assert!(
        out.is_empty() || out.starts_with("HTTP/1.1 431"),
        "{}",
        &out[..out.len().min(100)]
    );
    drop(idle);
}
