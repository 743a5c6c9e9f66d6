//! Sockets of this machine from `/proc/net/tcp` (IPv4): which process listens on a loopback
//! port, whether a connection to a port is established.

/// A socket state in `/proc/net/tcp` (the kernel's `TCP_*` numbers, in hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    Established,
    Listen,
}

impl TcpState {
    fn code(self) -> &'static str {
        match self {
            TcpState::Established => "01",
            TcpState::Listen => "0A",
        }
    }
}

/// Inodes of the sockets on local address 127.0.0.1:`port` in `state`.
fn loopback_sockets(port: u16, state: TcpState) -> Vec<String> {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return vec![];
    };
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // cols: sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            (cols.len() > 9 && cols[1] == local && cols[3] == state.code())
                .then(|| cols[9].to_string())
        })
        .collect()
}

/// Whether process `pid` holds a socket listening on 127.0.0.1:`port` (from /proc/net/tcp
/// and the process's fds).
pub fn listens_on(pid: u32, port: u16) -> bool {
    let inodes: Vec<String> = loopback_sockets(port, TcpState::Listen)
        .into_iter()
        .map(|i| format!("socket:[{i}]"))
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
}

/// Whether some connection to local port `port` (on 127.0.0.1) is established.
pub fn connection_established_to(port: u16) -> bool {
    !loopback_sockets(port, TcpState::Established).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_and_a_connection_of_this_process_are_seen() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(listens_on(std::process::id(), port));
        assert!(!connection_established_to(port));
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let _server = listener.accept().expect("accept");
        assert!(connection_established_to(port));
        drop(listener);
        assert!(!listens_on(std::process::id(), port));
    }
}
