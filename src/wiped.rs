//! Secret bytes in memory: wiped when dropped, and never left behind in a
//! freed block when a buffer grows. Everything rendered from a secret's
//! values, and every response body, is held so.

use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

pub type Bytes = Zeroizing<Vec<u8>>;

/// A growing buffer for secret bytes. `Vec` frees its old block unwiped
/// when it grows; this moves the bytes into a fresh zeroizing allocation
/// instead, so the old block is wiped on drop. Used for everything rendered
/// from a value and for response bodies.
#[derive(Default)]
pub struct SecretBuf(pub Bytes);

impl SecretBuf {
    pub fn with_capacity(n: usize) -> SecretBuf {
        SecretBuf(Zeroizing::new(Vec::with_capacity(n)))
    }

    pub fn extend(&mut self, data: &[u8]) {
        let need = self.0.len() + data.len();
        if need > self.0.capacity() {
            let mut grown = Vec::with_capacity(need.max(self.0.capacity() * 2).max(64));
            grown.extend_from_slice(&self.0);
            // The old buffer is dropped here, wiped.
            self.0 = Zeroizing::new(grown);
        }
        self.0.extend_from_slice(data);
    }
}

impl std::io::Write for SecretBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.extend(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Overwrite every string inside a parsed JSON value.
pub fn wipe(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(wipe),
        Value::Object(o) => o.values_mut().for_each(wipe),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_buf_grows_without_losing_bytes() {
        let mut b = SecretBuf::with_capacity(1);
        let mut want = Vec::new();
        for i in 0..2000u32 {
            let chunk = i.to_le_bytes();
            b.extend(&chunk);
            want.extend_from_slice(&chunk);
        }
        assert_eq!(b.0.as_slice(), &want[..]);
    }

    #[test]
    fn wipe_clears_strings() {
        let mut v = json!({"a": ["secret", {"b": "secret"}]});
        wipe(&mut v);
        assert_eq!(v, json!({"a": ["", {"b": ""}]}));
    }
}
