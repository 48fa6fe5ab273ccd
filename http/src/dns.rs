//! Name resolution that never blocks the shard.
//!
//! IP literals and `localhost` are answered on the spot; any other name is
//! resolved by the system resolver on glommio's blocking-thread pool, so the
//! shard keeps running while it waits.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// The socket addresses of `host:port`, in the resolver's order.
pub async fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Some(addrs) = resolve_locally(host, port) {
        return Ok(addrs);
    }
    let name = host.to_owned();
    glommio::executor()
        .spawn_blocking(move || {
            (name.as_str(), port)
                .to_socket_addrs()
                .map(|found| found.collect())
        })
        .await
}

/// Answers that need no resolver: IP literals (IPv6 with or without
/// brackets) and `localhost`.
fn resolve_locally(host: &str, port: u16) -> Option<Vec<SocketAddr>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(vec![SocketAddr::new(ip, port)]);
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Some(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_localhost_need_no_resolver() {
        assert_eq!(
            resolve_locally("127.0.0.1", 80),
            Some(vec!["127.0.0.1:80".parse().unwrap()])
        );
        assert_eq!(
            resolve_locally("[::1]", 443),
            Some(vec!["[::1]:443".parse().unwrap()])
        );
        assert_eq!(
            resolve_locally("LocalHost", 8080).map(|a| a[0]),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(resolve_locally("example.invalid", 80), None);
    }

    #[test]
    fn other_names_go_to_the_blocking_pool() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                // `.invalid` never resolves (RFC 6761): the blocking pool
                // runs the system resolver and brings its error back.
                assert!(resolve("name.invalid", 80).await.is_err());
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
