//! What an `app.endpoints` entry may be: an address lifeguard can connect
//! to that is not lifeguard itself. An endpoint equal to `listen` or
//! `admin.listen` (or, for a wildcard listener, any local address with its
//! port) sends every request (and every probe) back into lifeguard, which
//! forwards it again: one request becomes hundreds of hops.
//!
//! Also how an address is written: `IP:PORT`, `[IPv6]:PORT`, `HOST:PORT`
//! (a name, resolved here, each time a config is loaded: at start and on
//! every reload), and for listeners `:PORT` (every IPv4 address).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

/// How addresses are written, for error messages.
pub(super) const ENDPOINT_FORMS: &str =
    "IP:PORT or HOST:PORT, e.g. 127.0.0.1:3000, localhost:3000, [::1]:3000";
pub(super) const LISTEN_FORMS: &str =
    "IP:PORT, HOST:PORT or :PORT, e.g. 0.0.0.0:8080, :8080, 127.0.0.1:8080";

/// Reads an address as written. A name becomes one address: the first IPv4
/// address it resolves to, else its first address (so `localhost` is
/// 127.0.0.1 whatever order the resolver lists it in). `listener`: `:PORT`
/// means `0.0.0.0:PORT`. `Err` says why, without the allowed forms.
pub(super) fn resolve(text: &str, listener: bool) -> Result<SocketAddr, String> {
    let t = text.trim();
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    let Some((host, port)) = t.rsplit_once(':') else {
        return Err(format!("invalid address \"{t}\": no port"));
    };
    let port: u16 = port.parse().map_err(|_| {
        format!("invalid address \"{t}\": port \"{port}\" is not a number from 0 to 65535")
    })?;
    if host.is_empty() {
        return if listener {
            Ok(SocketAddr::from(([0, 0, 0, 0], port)))
        } else {
            Err(format!("invalid address \"{t}\": no host"))
        };
    }
    let valid_name = host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid_name {
        return Err(format!(
            "invalid address \"{t}\": \"{host}\" is neither an IP address nor a host name"
        ));
    }
    let addrs = lookup(host, port)
        .map_err(|e| format!("the host name \"{host}\" in \"{t}\" does not resolve ({e})"))?;
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("the host name \"{host}\" in \"{t}\" resolves to no address"))
}

/// The system resolver (`/etc/hosts`, then DNS).
#[cfg(not(fuzzing))]
fn lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    Ok(std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?.collect())
}

/// Under the fuzzer (`cargo fuzz` builds with `--cfg fuzzing`) only
/// `localhost` resolves: thousands of made-up names a second must not
/// become DNS queries.
#[cfg(fuzzing)]
fn lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    match host {
        "localhost" => Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]),
        _ => Err(std::io::Error::other(
            "names other than localhost are not resolved while fuzzing",
        )),
    }
}

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
    fn written_forms() {
        assert_eq!(resolve("127.0.0.1:3000", false), Ok(a("127.0.0.1:3000")));
        assert_eq!(resolve("[::1]:3000", false), Ok(a("[::1]:3000")));
        assert_eq!(resolve("localhost:3000", false), Ok(a("127.0.0.1:3000")));
        assert_eq!(resolve(":8080", true), Ok(a("0.0.0.0:8080")));
        let no_host = resolve(":8080", false).unwrap_err();
        assert!(no_host.contains("no host"), "{no_host}");
        let port = resolve("x:y", false).unwrap_err();
        assert_eq!(
            port,
            "invalid address \"x:y\": port \"y\" is not a number from 0 to 65535"
        );
        assert!(resolve("3000", false).unwrap_err().contains("no port"));
        let name = resolve("a b:80", false).unwrap_err();
        assert!(
            name.contains("neither an IP address nor a host name"),
            "{name}"
        );
        // RFC 6761: .invalid never resolves.
        let gone = resolve("app.invalid:3000", false).unwrap_err();
        assert!(
            gone.starts_with(
                "the host name \"app.invalid\" in \"app.invalid:3000\" does not resolve"
            ),
            "{gone}"
        );
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
