//! The real self-hosted Nexrender server (`@nexrender/server` from npm, the
//! version `scripts/tools.sh` pins), run by node on a loopback port with a
//! database file of its own: the tests create jobs through its API and
//! move them through its states with `PUT /api/v1/jobs/{uid}`, as a worker
//! does, without After Effects.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Starts the server's handler as its README says, but on loopback only
/// (its own CLI binds every interface); prints the port once listening.
const START: &str = "
const micro = require('micro');
const server = require(process.env.NEXRENDER_SERVER_DIR);
const [port, secret] = process.argv.slice(1);
const s = micro(server.createHandler(secret)).listen(Number(port), '127.0.0.1', () => {
  console.log('listening ' + s.address().port);
});
";

/// Where the pinned server is: `NEXRENDER_SERVER_DIR`, else `.tools`.
/// `None` (the test is skipped) when it is not installed, unless
/// `REQUIRE_NEXRENDER_SERVER` is set (the test command sets it).
pub fn server_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("NEXRENDER_SERVER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/node_modules/@nexrender/server")
        });
    if dir.join("package.json").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("REQUIRE_NEXRENDER_SERVER").is_none(),
        "REQUIRE_NEXRENDER_SERVER is set but @nexrender/server is not at {}",
        dir.display()
    );
    eprintln!("@nexrender/server not installed: skipping (scripts/test-all.sh installs it)");
    None
}

pub struct NexrenderServer {
    child: Option<Child>,
    pub port: u16,
    pub secret: String,
    dir: PathBuf,
    db: PathBuf,
    _tmp: tempfile::TempDir,
    http: reqwest::Client,
}

impl NexrenderServer {
    /// The server with `secret` and the jobs `seed` in its database (as it
    /// stores them: whole jobs with their times), on a free port.
    pub async fn start(secret: &str, seed: &[Value]) -> Option<NexrenderServer> {
        let dir = server_dir()?;
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("database.js");
        std::fs::write(&db, serde_json::to_vec(seed).unwrap()).unwrap();
        let mut server = NexrenderServer {
            child: None,
            port: super::free_port(),
            secret: secret.into(),
            dir,
            db,
            _tmp: tmp,
            http: reqwest::Client::new(),
        };
        server.run().await;
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn run(&mut self) {
        let node_path = self.dir.parent().and_then(|p| p.parent()).unwrap();
        let child = Command::new("node")
            .arg("-e")
            .arg(START)
            .arg(self.port.to_string())
            .arg(&self.secret)
            .env("NEXRENDER_SERVER_DIR", &self.dir)
            .env("NODE_PATH", node_path)
            .env("NEXRENDER_DATABASE", &self.db)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .expect("start node");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let health = self
                .http
                .get(format!("{}/api/v1/health", self.url()))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "the server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server goes away (killed, as a crash or a host restart would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// It comes back on the same port, with the jobs it had saved.
    pub async fn restart(&mut self) {
        self.kill();
        self.run().await;
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.url()))
            .header("nexrender-secret", &self.secret)
    }

    async fn json(&self, req: reqwest::RequestBuilder) -> Value {
        let r = req.send().await.expect("the server answers");
        assert!(
            r.status().is_success(),
            "{}: {}",
            r.status(),
            r.text().await.unwrap()
        );
        r.json().await.unwrap()
    }

    /// `POST /api/v1/jobs`: a job rendering `template` (a source URL),
    /// tagged `tags`; the server makes it `queued`. Its uid.
    pub async fn create(&self, template: &str, tags: &str) -> String {
        let job = json!({
            "template": {"src": template, "composition": "main"},
            "assets": [],
            "actions": {"prerender": [], "postrender": []},
            "tags": tags,
        });
        let made = self
            .json(self.request(reqwest::Method::POST, "/jobs").json(&job))
            .await;
        made["uid"].as_str().unwrap().to_owned()
    }

    /// `PUT /api/v1/jobs/{uid}` with `fields` merged in, as a worker reports.
    pub async fn update(&self, uid: &str, fields: Value) -> Value {
        self.json(
            self.request(reqwest::Method::PUT, &format!("/jobs/{uid}"))
                .json(&fields),
        )
        .await
    }

    /// `GET /api/v1/jobs/pickup`: a worker takes the oldest queued job.
    pub async fn pickup(&self) -> Value {
        self.json(self.request(reqwest::Method::GET, "/jobs/pickup"))
            .await
    }

    /// `DELETE /api/v1/jobs/{uid}`.
    pub async fn remove(&self, uid: &str) {
        self.json(self.request(reqwest::Method::DELETE, &format!("/jobs/{uid}")))
            .await;
    }

    /// Every job the server holds, whole: the truth the tests compare with.
    pub async fn jobs(&self) -> Vec<Value> {
        match self.json(self.request(reqwest::Method::GET, "/jobs")).await {
            Value::Array(jobs) => jobs,
            other => panic!("not a job list: {other}"),
        }
    }
}

impl Drop for NexrenderServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Milliseconds of an RFC 3339 time the server wrote.
pub fn millis(v: &Value) -> Option<i64> {
    let s = v.as_str()?;
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// `at` (Unix milliseconds) as the server writes times
/// (`2026-12-05T12:00:00.000Z`, JavaScript's `toISOString`).
pub fn iso(at: i64) -> String {
    nexrender_exporter::timefmt::format_millis(at)
}
