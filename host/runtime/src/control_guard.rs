//! Who may talk to a job's control API: the `Host` header a request names
//! and the bearer token it carries.
//!
//! The token keeps out other local users and other processes. The `Host`
//! check keeps out web pages: a page in a browser on this machine can make
//! its own DNS name resolve to 127.0.0.1 (DNS rebinding) and then send
//! requests that the browser treats as same-origin; those carry the page's
//! name in `Host`, which is refused before anything else is looked at.

use std::net::{IpAddr, SocketAddr};

use subtle::ConstantTimeEq as _;

/// The `Host` values a server listening on `bound` answers to.
#[derive(Debug, Clone)]
pub(crate) struct HostCheck {
    port: u16,
    /// A non-loopback address the operator chose to listen on (`None` for
    /// loopback). An unspecified address (0.0.0.0, ::) admits any IP
    /// literal: a literal cannot be rebound, only a name can.
    bound: Option<IpAddr>,
}

impl HostCheck {
    pub(crate) fn new(bound: SocketAddr) -> HostCheck {
        HostCheck {
            port: bound.port(),
            bound: (!bound.ip().is_loopback()).then_some(bound.ip()),
        }
    }

    /// Whether a request with this `Host` header is served: `127.0.0.1`,
    /// `localhost` or `[::1]` with the server's port (and the bound address
    /// when the operator asked for a non-loopback one).
    pub(crate) fn allows(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        if port.unwrap_or(80) != self.port {
            return false;
        }
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        let Ok(ip) = name.parse::<IpAddr>() else {
            return false;
        };
        match (ip, self.bound) {
            (IpAddr::V4(v4), _) if v4 == std::net::Ipv4Addr::LOCALHOST => true,
            (IpAddr::V6(v6), _) if v6 == std::net::Ipv6Addr::LOCALHOST => true,
            (_, Some(bound)) if bound.is_unspecified() => true,
            (ip, Some(bound)) => ip == bound,
            _ => false,
        }
    }
}

/// `name[:port]` or `[v6][:port]`; `None` if malformed.
fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        match after {
            "" => (v6, None),
            _ => (v6, Some(after.strip_prefix(':')?)),
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    (!name.is_empty()).then_some((name, port))
}

/// Why a request was refused by [`check_bearer`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BearerRefusal {
    Missing,
    Wrong,
}

/// Checks an `Authorization` header against `token` in time that does not
/// depend on where they differ.
pub(crate) fn check_bearer(header: Option<&[u8]>, token: &str) -> Result<(), BearerRefusal> {
    let presented = header
        .and_then(|v| v.strip_prefix(b"Bearer "))
        .ok_or(BearerRefusal::Missing)?;
    if bool::from(presented.ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(BearerRefusal::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_with_the_port_are_served() {
        let check = HostCheck::new("127.0.0.1:8081".parse().unwrap());
        for ok in [
            "127.0.0.1:8081",
            "localhost:8081",
            "LocalHost:8081",
            "[::1]:8081",
        ] {
            assert!(check.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example:8081",
            "127.0.0.1.nip.io:8081",
            "127.0.0.1:8082",
            "localhost",
            "[::1]",
            "10.0.0.5:8081",
            "",
            ":8081",
            "localhost:8081:1",
            "[::1:8081",
            "localhost:99999",
        ] {
            assert!(!check.allows(refused), "{refused}");
        }
    }

    #[test]
    fn a_chosen_address_is_served_by_literal_never_by_another_name() {
        let check = HostCheck::new("10.0.0.5:9000".parse().unwrap());
        assert!(check.allows("10.0.0.5:9000"));
        assert!(check.allows("localhost:9000"));
        assert!(!check.allows("10.0.0.6:9000"));
        assert!(!check.allows("node.example:9000"));
        let any = HostCheck::new("0.0.0.0:9000".parse().unwrap());
        assert!(any.allows("192.168.1.2:9000"));
        assert!(any.allows("[fe80::1]:9000"));
        assert!(!any.allows("rebound.example:9000"));
    }

    #[test]
    fn port_80_may_be_left_out() {
        let check = HostCheck::new("127.0.0.1:80".parse().unwrap());
        assert!(check.allows("localhost"));
        assert!(check.allows("127.0.0.1:80"));
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let token = "0123abcd";
        assert_eq!(check_bearer(Some(b"Bearer 0123abcd"), token), Ok(()));
        assert_eq!(check_bearer(None, token), Err(BearerRefusal::Missing));
        assert_eq!(
            check_bearer(Some(b"Basic 0123abcd"), token),
            Err(BearerRefusal::Missing)
        );
        for wrong in [
            &b"Bearer 0123abce"[..],
            b"Bearer 0123abcd ",
            b"Bearer ",
            b"Bearer 0123abc",
        ] {
            assert_eq!(check_bearer(Some(wrong), token), Err(BearerRefusal::Wrong));
        }
    }
}
