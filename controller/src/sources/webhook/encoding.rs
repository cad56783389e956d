//! The three text encodings a webhook meets: percent-encoding (query
//! strings, CloudEvents header values), base64 (HTTP Basic credentials)
//! and hex (HMAC signatures). Small enough not to pull in crates.

/// Decodes `%XX` escapes; `None` if an escape is cut short or not hex.
/// `+` stays `+`: tokens are often base64 and pasted into URLs unescaped.
pub(super) fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_digit(*bytes.get(i + 1)?)?;
            let lo = hex_digit(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Decodes lower- or upper-case hex; `None` on an odd length or a non-hex
/// character.
pub(super) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?))
        .collect()
}

/// Decodes standard-alphabet base64 (RFC 4648 §4), padded or not; `None`
/// on any other character, misplaced padding or an impossible length.
pub(super) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let unpadded = s.trim_end_matches('=');
    let padding = bytes.len() - unpadded.len();
    if padding > 2 || (padding > 0 && !bytes.len().is_multiple_of(4)) {
        return None;
    }
    let digits: Vec<u8> = unpadded.bytes().map(base64_digit).collect::<Option<_>>()?;
    // A lone trailing character carries 6 bits: less than a byte.
    if digits.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut word = 0u32;
        for (i, &d) in chunk.iter().enumerate() {
            word |= u32::from(d) << (18 - 6 * i);
        }
        let [_, a, b, c] = word.to_be_bytes();
        out.extend_from_slice(&[a, b, c][..chunk.len() - 1]);
    }
    Some(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn base64_digit(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_rfc4648_vectors_padded_and_unpadded() {
        let vectors: [(&str, &[u8]); 7] = [
            ("", b""),
            ("Zg==", b"f"),
            ("Zm8=", b"fo"),
            ("Zm9v", b"foo"),
            ("Zm9vYg==", b"foob"),
            ("Zm9vYmE=", b"fooba"),
            ("Zm9vYmFy", b"foobar"),
        ];
        for (encoded, plain) in vectors {
            assert_eq!(base64_decode(encoded).as_deref(), Some(plain), "{encoded}");
            let bare = encoded.trim_end_matches('=');
            assert_eq!(base64_decode(bare).as_deref(), Some(plain), "{bare}");
        }
    }

    #[test]
    fn base64_decodes_the_whole_alphabet() {
        // 0xfb 0xff 0xbf encodes to "+/+/", exercising both symbols.
        assert_eq!(base64_decode("+/+/"), Some(vec![0xfb, 0xff, 0xbf]));
        assert_eq!(
            base64_decode("dXNlcjpzM2NyZXQ="),
            Some(b"user:s3cret".to_vec())
        );
    }

    #[test]
    fn base64_refuses_what_is_not_base64() {
        for bad in ["Zm9v!", "Zg=", "Z", "Zg===", "Zm=9v", "Zm 9v", "Zm9v-_"] {
            assert_eq!(base64_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hex_decodes_both_cases_and_refuses_the_rest() {
        assert_eq!(hex_decode("00ffA0"), Some(vec![0x00, 0xff, 0xa0]));
        assert_eq!(hex_decode(""), Some(vec![]));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn percent_decodes_escapes_and_keeps_plus() {
        assert_eq!(
            percent_decode("a%20b%2Bc+d").as_deref(),
            Some(&b"a b+c+d"[..])
        );
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é".as_bytes()));
        assert_eq!(percent_decode("100%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%zz"), None);
    }
}
