//! A TCP proxy in front of the test PostgreSQL that can be "stopped": every open connection is
//! cut and new ones are refused, exactly what the service sees when its database goes down.

use sqlx::postgres::PgConnectOptions;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncRead, AsyncWrite, copy_bidirectional};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::watch;

enum Upstream {
    Tcp(String),
    Unix(PathBuf),
}

pub struct DbProxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl DbProxy {
    /// Starts a proxy to the server `target` points at.
    pub async fn start(target: &PgConnectOptions) -> Self {
        let upstream = match target.get_socket() {
            Some(dir) => Upstream::Unix(dir.join(format!(".s.PGSQL.{}", target.get_port()))),
            None => Upstream::Tcp(format!("{}:{}", target.get_host(), target.get_port())),
        };
        let upstream = Arc::new(upstream);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let (accept_up, accept_cut) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    drop(client); // refused: the database is "down"
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut_rx = accept_cut.subscribe();
                tokio::spawn(async move {
                    let copy = async {
                        match &*upstream {
                            Upstream::Tcp(addr) => {
                                if let Ok(server) = TcpStream::connect(addr).await {
                                    pipe(client, server).await;
                                }
                            }
                            Upstream::Unix(path) => {
                                if let Ok(server) = UnixStream::connect(path).await {
                                    pipe(client, server).await;
                                }
                            }
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Self { port, up, cut }
    }

    /// Options that reach the same server and database through the proxy.
    pub fn options(&self, target: &PgConnectOptions) -> PgConnectOptions {
        if target.get_socket().is_none() {
            // TCP upstream: keep every setting (password, TLS mode), change only the address.
            return target.clone().host("127.0.0.1").port(self.port);
        }
        // Unix-socket upstream (the private cluster, trust authentication).
        let mut options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(target.get_username());
        if let Some(db) = target.get_database() {
            options = options.database(db);
        }
        options
    }

    /// The database goes away: open connections are cut, new ones refused.
    pub fn stop(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// The database is back.
    pub fn start_again(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn pipe<A, B>(mut a: A, mut b: B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let _ = copy_bidirectional(&mut a, &mut b).await;
}
