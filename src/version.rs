//! What build this is: shown on the landing page and in
//! `nexrender_exporter_build_info`.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The source revision, when the build was told it (`build.rs` reads it
/// from git).
pub const REVISION: &str = match option_env!("NEXRENDER_BUILD_REVISION") {
    Some(r) => r,
    None => "unknown",
};
