//! Free loopback ports that stay free while a test restarts a server.
//!
//! A test that SIGKILLs a server and restarts it on the same port needs that
//! port to still be free at the restart. Ports from `bind(":0")` come from the
//! kernel's ephemeral range, the same range the kernel hands to outgoing
//! connections: in the seconds a server is down, any client connection on the
//! machine may be given its port, and the restarted server fails with "address
//! already in use" (seen on CI).

use std::{io, net::TcpListener};

/// Picks `n` distinct loopback ports outside the kernel's ephemeral range,
/// each free when picked (every listener is held until all are picked).
///
/// The search starts at a random port so that test processes running at the
/// same time rarely try the same ones; a port another process holds is
/// skipped. Where no non-ephemeral range of useful size exists, falls back to
/// kernel-assigned ports.
///
/// # Errors
/// When `n` ports cannot be bound.
pub fn pick(n: usize) -> io::Result<Vec<u16>> {
    let Some((first, last)) = stable_range() else {
        return kernel_assigned(n);
    };
    let span = u32::from(last - first) + 1;
    let start = rand::random::<u32>() % span;
    let mut listeners = Vec::with_capacity(n);
    for step in 0..span {
        if listeners.len() == n {
            break;
        }
        let port = first + u16::try_from((start + step) % span).expect("within the span");
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(listener);
        }
    }
    if listeners.len() < n {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "only {} of {n} ports free in {first}-{last}",
                listeners.len()
            ),
        ));
    }
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// The largest run of unprivileged ports outside the ephemeral range (from
/// 10000, below well-known services), if it holds at least 1,000 ports.
fn stable_range() -> Option<(u16, u16)> {
    const FLOOR: u16 = 10_000;
    let (low, high) = ephemeral_range();
    let below = (FLOOR, low.saturating_sub(1));
    let above = (high.saturating_add(1).max(FLOOR), u16::MAX);
    [below, above]
        .into_iter()
        .filter(|(a, b)| a <= b && b - a >= 1_000)
        .max_by_key(|(a, b)| b - a)
}

fn kernel_assigned(n: usize) -> io::Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// The kernel's ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`),
/// or Linux's default when it cannot be read.
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(str::parse::<u16>);
            Some((parts.next()?.ok()?, parts.next()?.ok()?))
        })
        .unwrap_or((32768, 60999))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_ports_are_distinct_free_and_outside_the_ephemeral_range() {
        let (low, high) = ephemeral_range();
        let ports = pick(30).expect("ports");
        let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "distinct: {ports:?}");
        for port in &ports {
            assert!(
                !(low..=high).contains(port),
                "port {port} is in the ephemeral range {low}-{high}: an outgoing \
                 connection may take it while its server is down"
            );
            TcpListener::bind(("127.0.0.1", *port)).expect("free after the pick");
        }
    }
}
