// Records the git revision for nexrender_exporter_build_info.
fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-env-changed=NEXRENDER_BUILD_REVISION");
    if std::env::var("NEXRENDER_BUILD_REVISION").is_ok() {
        return;
    }
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if let Some(rev) = rev {
        println!("cargo:rustc-env=NEXRENDER_BUILD_REVISION={rev}");
    }
}
