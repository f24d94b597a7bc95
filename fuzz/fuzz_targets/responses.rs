//! Response parsing: any body Vault (or whatever answers in its place) sends
//! is parsed or rejected, never a panic, and what parses renders whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reqwest::StatusCode;
use vaultfs::testing::tree::listing_children;
use vaultfs::testing::store::KvVersion;
use vaultfs::testing::vault::{parse_list, parse_read};

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(keys) = parse_list(&v) {
        for c in listing_children(&keys) {
            assert!(!c.is_empty() && !c.contains('/'));
        }
    }
    for version in [KvVersion::V1, KvVersion::V2] {
        for status in [StatusCode::OK, StatusCode::NOT_FOUND] {
            if let Ok(s) = parse_read(version, status, v.clone()) {
                for f in s.files() {
                    assert!(s.content(&f).is_some());
                }
            }
        }
    }
});
