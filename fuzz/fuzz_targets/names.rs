//! File-name encoding: any file name decodes to nothing or to the one Vault
//! name that encodes to it; any Vault name encodes to a safe file name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultfs::testing::naming::{decode, encode, own_name, NAME_MAX};

fuzz_target!(|data: &[u8]| {
    if let Some(n) = decode(data) {
        assert_eq!(encode(&n).as_deref().map(str::as_bytes), Some(data));
    }
    if let Ok(n) = std::str::from_utf8(data) {
        if let Some(e) = encode(n) {
            assert!(!e.is_empty() && e.len() <= NAME_MAX);
            assert!(!e.contains('/') && !e.contains('\0') && e != "." && e != "..");
            assert!(own_name(e.as_bytes()).is_none());
            assert_eq!(decode(e.as_bytes()).as_deref(), Some(n));
        }
    }
});
