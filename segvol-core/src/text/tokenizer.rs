//! CLIP's tokenizer as SegVol runs it: `AutoTokenizer.from_pretrained("config/clip")`, i.e.
//! Hugging Face's fast CLIP tokenizer on the `tokenizer.json` in SegVol's repository.
//!
//! The byte-pair encoding itself is the `instant-clip-tokenizer` crate (it bundles OpenAI's
//! `bpe_simple_vocab_16e6.txt`, the vocabulary and merges that `tokenizer.json` holds). Around
//! it, three steps make it equal to Hugging Face's pipeline, each checked by the fixture test:
//! - normalisation: Unicode NFC, then lower case character by character (the `tokenizers`
//!   `Lowercase` normaliser maps each character on its own: a final capital sigma becomes `σ`,
//!   where `str::to_lowercase` would give `ς`); the whitespace collapse is implied by the word
//!   split, which drops whitespace;
//! - the special strings `<|startoftext|>` / `<|endoftext|>` in the text become their ids, as
//!   Hugging Face's added tokens do;
//! - the crate's own markers `<start_of_text>` / `<end_of_text>` are *not* special for Hugging
//!   Face, so text is cut right after such a `<` (a word boundary in both splitters) and the
//!   pieces encoded apart, which keeps them ordinary text.

use instant_clip_tokenizer::{Token, Tokenizer};
use unicode_normalization::UnicodeNormalization;

/// CLIP's tokenizer (BOS 49 406, EOS 49 407).
pub struct ClipTokenizer {
    inner: Tokenizer,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClipTokenizer")
    }
}

impl Default for ClipTokenizer {
    fn default() -> Self {
        Self::new()
    }
}

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";

impl ClipTokenizer {
    /// The tokenizer with CLIP's bundled vocabulary (about 30 ms to build: make it once).
    pub fn new() -> Self {
        ClipTokenizer {
            inner: Tokenizer::new(),
        }
    }

    /// Token ids of `text` with the start and end tokens, as
    /// `tokenizer([text])["input_ids"][0]` gives them.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let bos = u32::from(self.inner.start_of_text().to_u16());
        let eos = u32::from(self.inner.end_of_text().to_u16());
        let mut ids = vec![bos];
        // Added tokens are matched before normalisation (`<|endoftext|>` is not normalised,
        // `<|startoftext|>` is, so it also matches in any case).
        let mut rest = text;
        while !rest.is_empty() {
            let next_eos = rest.find(EOS);
            let next_bos = find_ascii_ci(rest, BOS);
            let (at, len, id) = match (next_eos, next_bos) {
                (Some(e), Some(b)) if b < e => (b, BOS.len(), bos),
                (Some(e), _) => (e, EOS.len(), eos),
                (None, Some(b)) => (b, BOS.len(), bos),
                (None, None) => (rest.len(), 0, 0),
            };
            self.encode_plain(&rest[..at], &mut ids);
            if len == 0 {
                break;
            }
            ids.push(id);
            rest = &rest[at + len..];
        }
        ids.push(eos);
        ids
    }

    /// Text with no added tokens: normalise, cut at the crate's markers, encode.
    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        let norm: String = text.nfc().flat_map(char::to_lowercase).collect();
        let mut tokens: Vec<Token> = Vec::new();
        let mut start = 0;
        for (i, _) in norm.match_indices('<') {
            let tail = &norm[i..];
            if tail.starts_with("<start_of_text>") || tail.starts_with("<end_of_text>") {
                self.inner.encode(&norm[start..=i], &mut tokens);
                start = i + 1;
            }
        }
        self.inner.encode(&norm[start..], &mut tokens);
        out.extend(tokens.into_iter().map(|t| u32::from(t.to_u16())));
    }
}

/// The first byte offset where `needle` (ASCII) occurs in `s` ignoring ASCII case. No
/// non-ASCII character lower-cases to one of `<|startoftext|>`'s characters, so this is the
/// match on the normalised text.
fn find_ascii_ci(s: &str, needle: &str) -> Option<usize> {
    let (h, n) = (s.as_bytes(), needle.as_bytes());
    (0..=h.len().checked_sub(n.len())?).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example() {
        let t = ClipTokenizer::new();
        assert_eq!(
            t.encode("A computerized tomography of a liver."),
            [
                49406, 320, 11639, 704, 7690, 999, 22399, 539, 320, 12639, 269, 49407
            ]
        );
    }
}
