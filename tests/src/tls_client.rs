//! A bare TLS client: one TCP connection and one handshake, no gRPC
//! (which may reconnect on its own), so a test knows exactly how many
//! handshakes a server saw.

use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use levee_common::identity::CONTROLLER_SERVER_NAME;
use levee_common::tls::TlsMaterial;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

/// Connects to `addr`, handshakes presenting `tls`'s certificate, and
/// reads until the server answers or closes. Ok when the server kept the
/// connection through the handshake; Err with what ended it otherwise.
pub fn handshake(addr: &str, tls: &TlsMaterial) -> Result<(), String> {
    levee_common::tls::install_crypto_provider();
    let verifier = tls
        .webpki_server_verifier()
        .map_err(|err| err.to_string())?;
    let config = tls
        .rustls_client_config(verifier)
        .map_err(|err| err.to_string())?;
    let server_name =
        ServerName::try_from(CONTROLLER_SERVER_NAME).map_err(|err| err.to_string())?;
    let connection =
        ClientConnection::new(Arc::new(config), server_name).map_err(|err| err.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|err| err.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|err| err.to_string())?;
    let mut stream = StreamOwned::new(connection, tcp);
    // TLS 1.3 finishes the client's side before the server has checked
    // the client's certificate: its verdict comes with the first read.
    let mut byte = [0_u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => Err("the server closed the connection".into()),
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Err(err) => Err(err.to_string()),
    }
}
