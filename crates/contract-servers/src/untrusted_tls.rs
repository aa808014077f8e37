//! A TLS server whose certificate nobody trusts (self-signed, made at start), for tests of what
//! a user sees when a server's certificate is refused. It completes handshakes with clients that
//! accept any certificate and answers every request with `200 {}`; a client that checks
//! certificates (Parley's) gives up during the handshake.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running server; stops when dropped.
pub struct UntrustedTls {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UntrustedTls {
    /// Listens on `127.0.0.1:0` with a fresh self-signed certificate for `localhost` and
    /// `127.0.0.1`.
    ///
    /// # Panics
    /// When the certificate cannot be made or the port cannot be bound (test fixture).
    pub fn start() -> UntrustedTls {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("self-signed certificate");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .expect("server certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("untrusted-tls".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let config = Arc::clone(&config);
                        std::thread::spawn(move || serve(stream, config));
                    }
                }
            })
            .expect("spawn the TLS server");
        UntrustedTls { address, stop, thread: Some(thread) }
    }

    /// `127.0.0.1:<port>`
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

/// One connection: the handshake, then `200 {}` to whatever arrives. Errors end the connection
/// (a client that refuses the certificate closes it mid-handshake).
fn serve(mut stream: TcpStream, config: Arc<rustls::ServerConfig>) {
    let Ok(mut connection) = rustls::ServerConnection::new(config) else { return };
    if stream.set_read_timeout(Some(Duration::from_secs(10))).is_err() {
        return;
    }
    let mut tls = rustls::Stream::new(&mut connection, &mut stream);
    let mut request = [0_u8; 4096];
    if matches!(tls.read(&mut request), Ok(read) if read > 0) {
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
        if tls.write_all(answer.as_bytes()).is_ok() {
            tls.conn.send_close_notify();
            // The close notification is best effort: the test reads the client's view.
            drop(tls.flush());
        }
    }
}

impl Drop for UntrustedTls {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        drop(TcpStream::connect(self.address));
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the TLS test server's thread panicked");
        }
    }
}
