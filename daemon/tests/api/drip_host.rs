//! A hostile release host on loopback (plain HTTP/1.1, one request per connection): it
//! serves the files under a directory, and drips the body of every file whose path
//! contains one of the configured needles at one byte per second, headers first, so that
//! no gap between bytes is long and the whole transfer is endless; such a path that has
//! no file gets an endless body. Other missing files are 404.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

pub struct DripHost {
    pub url: String,
    needles: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DripHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DripHost {
    pub async fn start(root: PathBuf) -> DripHost {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let needles: Arc<Mutex<Vec<String>>> = Arc::default();
        let shared = Arc::clone(&needles);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let needles = shared.lock().unwrap().clone();
                tokio::spawn(answer(stream, root.clone(), needles));
            }
        });
        DripHost { url, needles, task }
    }

    /// Drips the files whose path contains any of `needles` from now on.
    pub fn drip(&self, needles: &[&str]) {
        *self.needles.lock().unwrap() = needles.iter().map(|s| s.to_string()).collect();
    }
}

async fn answer(mut stream: TcpStream, root: PathBuf, needles: Vec<String>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    if path.split('/').any(|c| c == "..") {
        return;
    }
    let dripped = needles.iter().any(|n| path.contains(n.as_str()));
    let body = std::fs::read(root.join(&path));
    if body.is_err() && dripped {
        // A file the host does not have, answered anyway with bytes that never end.
        let head = "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        loop {
            if stream.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let Ok(body) = body else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return;
    };
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    if stream.write_all(reply.as_bytes()).await.is_err() {
        return;
    }
    if dripped {
        for byte in body {
            if stream.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    } else {
        let _ = stream.write_all(&body).await;
    }
    let _ = stream.shutdown().await;
}
