//! Any bytes as a YAML config file: refused with a message or accepted,
//! never a panic.
#![no_main]
use std::io::Write;

use libfuzzer_sys::fuzz_target;
use nexrender_exporter::config::{load, Environment, FlagOverrides};

struct NoEnv;
impl Environment for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

fuzz_target!(|data: &[u8]| {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    f.write_all(data).unwrap();
    match load(Some(f.path()), &FlagOverrides::default(), &NoEnv, false) {
        Ok(l) => {
            let _ = format!("{l:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
