//! IPv4 addresses as text, digit by digit, without the `fmt` machinery: the hot path writes
//! one into `X-Forwarded-For` and one into every access-log line.

use std::net::Ipv4Addr;

/// Dotted-quad `ip` into `buf` (at least 15 bytes); returns the length written (at most 15).
pub fn write_ipv4(ip: Ipv4Addr, buf: &mut [u8]) -> usize {
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_display(bits in any::<u32>()) {
            let ip = Ipv4Addr::from(bits);
            let mut buf = [0u8; 15];
            let n = write_ipv4(ip, &mut buf);
            prop_assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), ip.to_string());
        }
    }
}
