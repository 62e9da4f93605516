//! The per-deployment key of `hash` masks: a masked value is HMAC-SHA-256(key, value), hex,
//! so a guessed patient id cannot be confirmed by hashing it without the key.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use sha2::{Digest, Sha256};

/// HMAC-SHA-256's block size.
const BLOCK: usize = 64;

/// The key of `hash` masks, kept as the HMAC block it expands to. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MaskKey {
    block: [u8; BLOCK],
}

impl std::fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskKey(REDACTED)")
    }
}

impl MaskKey {
    /// The key from a deployment's secret (any bytes; one longer than a block is hashed first,
    /// as RFC 2104 says).
    pub fn new(secret: &[u8]) -> Self {
        let mut block = [0u8; BLOCK];
        if secret.len() > BLOCK {
            block[..32].copy_from_slice(&Sha256::digest(secret));
        } else {
            block[..secret.len()].copy_from_slice(secret);
        }
        Self { block }
    }

    /// A key of this process only (when a deployment configured none): masked values are
    /// then stable until the process restarts.
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        if getrandom::fill(&mut secret).is_err() {
            // No randomness from the OS (never seen): this instant and process, hashed.
            let seed = format!("{:?}/{}", std::time::SystemTime::now(), std::process::id());
            secret.copy_from_slice(&Sha256::digest(seed.as_bytes()));
        }
        Self::new(&secret)
    }

    /// The `hash` mask as a scalar function of a text value (NULL stays NULL).
    pub(crate) fn udf(&self) -> ScalarUDF {
        ScalarUDF::new_from_impl(KeyedHash {
            key: self.clone(),
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        })
    }

    /// The inner and outer padded keys, `K ⊕ ipad` and `K ⊕ opad`: HMAC(K, m) =
    /// SHA-256(outer ‖ SHA-256(inner ‖ m)). Whoever holds them can compute the masks.
    pub fn pads(&self) -> ([u8; BLOCK], [u8; BLOCK]) {
        (self.block.map(|b| b ^ 0x36), self.block.map(|b| b ^ 0x5c))
    }

    /// HMAC-SHA-256 of `value` under this key, lowercase hex.
    pub fn hmac_hex(&self, value: &[u8]) -> String {
        let (inner, outer) = self.pads();
        let inner = Sha256::new()
            .chain_update(inner)
            .chain_update(value)
            .finalize();
        let mac = Sha256::new()
            .chain_update(outer)
            .chain_update(inner)
            .finalize();
        mac.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `patientflow_mask(text)`: HMAC-SHA-256 under the deployment's key, lowercase hex.
#[derive(Debug, PartialEq, Eq, Hash)]
struct KeyedHash {
    key: MaskKey,
    signature: Signature,
}

impl ScalarUDFImpl for KeyedHash {
    fn name(&self) -> &str {
        "patientflow_mask"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(values) = arrays.first() else {
            return Ok(ColumnarValue::Array(Arc::new(StringArray::new_null(
                args.number_rows,
            ))));
        };
        let hashed: StringArray = values
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(|v| self.key.hmac_hex(v.as_bytes())))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(hashed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc_4231_test_cases() {
        // Test case 2: a short key.
        assert_eq!(
            MaskKey::new(b"Jefe").hmac_hex(b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than a block.
        assert_eq!(
            MaskKey::new(&[0xaa; 131])
                .hmac_hex(b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn the_key_is_never_shown() {
        assert_eq!(
            format!("{:?}", MaskKey::new(b"secret")),
            "MaskKey(REDACTED)"
        );
    }
}
