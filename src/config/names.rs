//! The shapes of names in the config: DNS labels and names, plan/resource/feature names and
//! colours, and the base64url words ACME tokens share with labels. Validation, host
//! normalisation and the ACME challenge use them; nothing here reads a config.

/// 1 to `max` bytes of the base64url alphabet (letters, digits, `-`, `_`): DNS labels and
/// ACME tokens.
pub fn is_base64url_word(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A DNS label of either case (letters, digits, `-`, `_`; not starting or ending with `-`).
pub fn is_valid_label_ci(label: &str) -> bool {
    is_base64url_word(label, 63) && has_label_shape(label.as_bytes())
}

/// The shape of a DNS label, its alphabet aside: 1 to 63 bytes, not starting or ending with
/// `-`. Host normalisation checks the alphabet by byte table and only the shape here.
pub fn has_label_shape(label: &[u8]) -> bool {
    matches!(label.len(), 1..=63) && label[0] != b'-' && label[label.len() - 1] != b'-'
}

/// A lower-case DNS label (letters, digits, `-`, `_`; not starting or ending with `-`).
pub fn is_valid_label(label: &str) -> bool {
    is_valid_label_ci(label) && !label.bytes().any(|b| b.is_ascii_uppercase())
}

/// A DNS name of valid labels, no trailing dot (used to validate config).
pub fn is_valid_dns_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(is_valid_label_ci)
}

/// A plan, resource or catalogue feature name: 1 to 64 of letters, digits, `-` and `_`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `#rrggbb`.
pub fn is_hex_color(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s.bytes().skip(1).all(|b| b.is_ascii_hexdigit())
}
