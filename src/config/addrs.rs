//! What an `app.endpoints` entry may be: an address lifeguard can connect
//! to that is not lifeguard itself. An endpoint equal to `listen` or
//! `admin.listen` (or, for a wildcard listener, any local address with its
//! port) sends every request (and every probe) back into lifeguard, which
//! forwards it again: one request becomes hundreds of hops.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

/// Why `endpoint` can never be an app, if it cannot.
pub(super) fn unusable(endpoint: SocketAddr) -> Option<&'static str> {
    let ip = endpoint.ip().to_canonical();
    if ip.is_unspecified() {
        Some("has an unspecified address (0.0.0.0 or ::): name the app's address, e.g. 127.0.0.1:3000")
    } else if endpoint.port() == 0 {
        Some("has port 0: nothing can be connected to there")
    } else if ip.is_multicast() {
        Some("is a multicast address")
    } else if ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        Some("is the broadcast address")
    } else {
        None
    }
}

/// Whether a connection to `endpoint` would reach the listener bound to
/// `listener` (not knowable for port 0, an ephemeral port).
pub(super) fn reaches(endpoint: SocketAddr, listener: SocketAddr) -> bool {
    if listener.port() == 0 || endpoint.port() != listener.port() {
        return false;
    }
    let to = endpoint.ip().to_canonical();
    let bound = listener.ip().to_canonical();
    match listener.ip() {
        // 0.0.0.0 accepts on every local IPv4 address.
        IpAddr::V4(v4) if v4.is_unspecified() => to.is_ipv4() && is_local(to),
        // [::] is bound dual-stack (server::listener), so IPv4 too.
        IpAddr::V6(v6) if v6.is_unspecified() => is_local(to),
        _ => to == bound,
    }
}

/// Loopback, or assigned to one of this host's interfaces: only a local
/// address can be bound (a throwaway UDP socket on port 0, closed at once;
/// nothing is sent).
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unusable_addresses() {
        for bad in [
            "0.0.0.0:3000",
            "[::]:3000",
            "127.0.0.1:0",
            "224.0.0.1:3000",
            "[ff02::1]:3000",
            "255.255.255.255:3000",
            "[::ffff:0.0.0.0]:3000",
        ] {
            assert!(unusable(a(bad)).is_some(), "{bad}");
        }
        for good in ["127.0.0.1:3000", "[::1]:3000", "10.0.0.7:80"] {
            assert_eq!(unusable(a(good)), None, "{good}");
        }
    }

    #[test]
    fn an_endpoint_that_is_a_listener() {
        assert!(reaches(a("127.0.0.1:8080"), a("127.0.0.1:8080")));
        assert!(reaches(a("127.0.0.1:8080"), a("0.0.0.0:8080")));
        assert!(reaches(a("127.0.0.2:8080"), a("0.0.0.0:8080")));
        assert!(reaches(a("127.0.0.1:8080"), a("[::]:8080")));
        assert!(reaches(a("[::1]:8080"), a("[::]:8080")));
        assert!(reaches(a("[::ffff:127.0.0.1]:8080"), a("127.0.0.1:8080")));
        assert!(!reaches(a("[::1]:8080"), a("0.0.0.0:8080")));
        assert!(!reaches(a("127.0.0.1:3000"), a("0.0.0.0:8080")));
        assert!(!reaches(a("127.0.0.2:8080"), a("127.0.0.1:8080")));
        assert!(!reaches(a("127.0.0.1:0"), a("127.0.0.1:0")));
        // TEST-NET-1 is assigned to no interface here.
        assert!(!reaches(a("192.0.2.1:8080"), a("0.0.0.0:8080")));
    }
}
