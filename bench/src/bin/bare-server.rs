//! The peer for `bench/http` and `bench/score`: a bare hyper + rustls server that reads
//! each request's body to the end (as any server of a POST must) and answers with a
//! fixed small JSON body, with no auth, admission, parsing, metrics or logging. Prints
//! `listening on ADDR` once bound.

use std::convert::Infallible;
use std::path::PathBuf;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

const BODY: &[u8] = br#"{"extensions":[],"name":"cofferd","version":"0.1.0"}"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let acceptor = TlsAcceptor::from(coffer_bench::server_config(&args.cert, &args.key)?);
    let listener = TcpListener::bind(&args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let service = service_fn(|req: http::Request<hyper::body::Incoming>| async {
                let _ = req.into_body().collect().await;
                Ok::<_, Infallible>(
                    http::Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(BODY)))
                        .unwrap_or_default(),
                )
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
