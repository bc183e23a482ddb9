//! An S3 server that verifies SigV4 (s3s-fs with authentication), for the asset load script:
//! postern streams from it, and wrk fetches from it directly with a presigned URL.
//!
//!   cargo run --release --example s3_server -- LISTEN_ADDR ROOT ACCESS_KEY SECRET_KEY
//!
//! Buckets are the directories under ROOT.

use std::net::SocketAddr;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, root, access_key, secret_key] = args.as_slice() else {
        eprintln!("usage: s3_server LISTEN_ADDR ROOT ACCESS_KEY SECRET_KEY");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse()?;
    let fs = s3s_fs::FileSystem::new(root).map_err(|e| format!("{root}: {e:?}"))?;
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        access_key.clone(),
        secret_key.clone(),
    ));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let http = Builder::new(TokioExecutor::new());
    loop {
        let (socket, _) = listener.accept().await?;
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
