//! Input hashes: what an asset was made from. An asset whose stored hash equals the hash of
//! its current inputs is not generated again.

use sha2::{Digest as _, Sha256};

/// Everything that determines an asset's bytes.
pub struct Inputs<'a> {
    /// The node kind.
    pub kind: &'a str,
    /// The content prompt.
    pub prompt: &'a str,
    /// `provider/model` of the generating model.
    pub model: &'a str,
    /// Checksums of the reference objects, in order.
    pub references: &'a [&'a str],
    /// Seconds, for videos.
    pub duration: Option<i64>,
}

/// `sha256:<hex>` of the inputs, with the prompt version mixed in so that a new prompt
/// template regenerates.
pub fn input_hash(inputs: &Inputs<'_>) -> String {
    let mut h = Sha256::new();
    for part in [
        drama_ai::PROMPT_VERSION,
        inputs.kind,
        inputs.model,
        inputs.prompt,
    ] {
        h.update(part.len().to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update(inputs.references.len().to_le_bytes());
    for r in inputs.references {
        h.update(r.len().to_le_bytes());
        h.update(r.as_bytes());
    }
    h.update(inputs.duration.unwrap_or(-1).to_le_bytes());
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// `sha256:<hex>` of bytes.
pub fn checksum(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Inputs<'static> {
        Inputs {
            kind: "storyboard",
            prompt: "a corgi",
            model: "offline/offline",
            references: &["sha256:aa"],
            duration: None,
        }
    }

    #[test]
    fn every_input_changes_the_hash() {
        let h = input_hash(&base());
        assert_eq!(h, input_hash(&base()));
        for changed in [
            Inputs {
                kind: "clip",
                ..base()
            },
            Inputs {
                prompt: "a corgi!",
                ..base()
            },
            Inputs {
                model: "gemini/x",
                ..base()
            },
            Inputs {
                references: &["sha256:ab"],
                ..base()
            },
            Inputs {
                references: &[],
                ..base()
            },
            Inputs {
                duration: Some(10),
                ..base()
            },
        ] {
            assert_ne!(h, input_hash(&changed));
        }
        // Field boundaries matter: moving text between fields is a different input.
        assert_ne!(
            input_hash(&Inputs {
                kind: "ab",
                prompt: "c",
                ..base()
            }),
            input_hash(&Inputs {
                kind: "a",
                prompt: "bc",
                ..base()
            })
        );
    }
}
