//! Our load generator: threads of blocking TCP clients on 127.0.0.1, each with one request in
//! flight at a time, on a new connection per request or on one kept-alive connection.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a client waits for a server before counting an error: long enough never to fire
/// on a working server, short enough that a broken one ends the run.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What the clients say and what they expect back.
#[derive(Clone, Copy, Debug)]
pub enum Protocol {
    /// `GET /`, answered with status 200: HTTP/1.0 on short connections (the server closes),
    /// HTTP/1.1 when kept alive.
    Http,
    /// Redis `PING`, answered with `+PONG`.
    RedisPing,
    /// Nothing: the server writes a line and closes (acceptbench).
    Greeting,
}

/// Whether each request has its own connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connections {
    /// Connect, one request, close.
    Short,
    /// One connection per client thread, reused for every request.
    KeepAlive,
}

/// A load to put on a server.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub port: u16,
    pub protocol: Protocol,
    pub connections: Connections,
    pub threads: usize,
    /// Each client starts a request at most this often; `None`: as fast as the server answers.
    pub pace: Option<Duration>,
}

/// One request that got its answer.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    /// When it started, since the load started.
    pub at: Duration,
    pub took: Duration,
}

/// What the clients got.
#[derive(Debug, Default)]
pub struct Outcome {
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Every request's latency, when they were recorded.
    pub latencies: Vec<Latency>,
}

impl Outcome {
    /// Answered requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// `Err` with the first error when any request failed: a figure is not measured on a
    /// server that drops clients.
    pub fn checked(self, what: &str) -> Result<Self, String> {
        match &self.first_error {
            None => Ok(self),
            Some(error) => Err(format!(
                "{what}: {} of {} requests failed (first: {error})",
                self.errors,
                self.errors + self.requests
            )),
        }
    }
}

/// A load being applied.
pub struct Running {
    stop: Arc<AtomicBool>,
    started: Instant,
    clients: Vec<JoinHandle<Outcome>>,
}

impl Running {
    /// When the load started (the origin of [`Latency::at`]).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Stops the clients and adds up what they got.
    pub fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        let mut total = Outcome {
            elapsed,
            ..Outcome::default()
        };
        for client in self.clients {
            let outcome = client.join().expect("a load client panicked");
            total.requests += outcome.requests;
            total.errors += outcome.errors;
            total.first_error = total.first_error.or(outcome.first_error);
            total.latencies.extend(outcome.latencies);
        }
        total
    }
}

impl Load {
    /// Applies the load for `duration`, without recording latencies.
    pub fn run_for(&self, duration: Duration) -> Outcome {
        let running = self.start(false);
        std::thread::sleep(duration);
        running.stop()
    }

    /// Starts the clients; they run until [`Running::stop`].
    pub fn start(&self, record_latencies: bool) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let clients = (0..self.threads)
            .map(|_| {
                let load = *self;
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || load.client(&stop, started, record_latencies))
            })
            .collect();
        Running {
            stop,
            started,
            clients,
        }
    }

    fn client(&self, stop: &AtomicBool, started: Instant, record: bool) -> Outcome {
        let mut outcome = Outcome::default();
        let mut kept: Option<TcpStream> = None;
        let mut buffer = Vec::with_capacity(1024);
        while !stop.load(Ordering::Relaxed) {
            let begin = Instant::now();
            match self.request(kept.take(), &mut buffer) {
                Ok(stream) => {
                    outcome.requests += 1;
                    if record {
                        outcome.latencies.push(Latency {
                            at: begin - started,
                            took: begin.elapsed(),
                        });
                    }
                    kept = stream;
                }
                Err(error) => {
                    outcome.errors += 1;
                    outcome.first_error.get_or_insert(error.to_string());
                    // Do not spin on a server that is gone.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            if let Some(pace) = self.pace {
                std::thread::sleep(pace.saturating_sub(begin.elapsed()));
            }
        }
        outcome
    }

    /// One request, on `kept` if there is one; returns the connection to keep, if any.
    fn request(
        &self,
        kept: Option<TcpStream>,
        buffer: &mut Vec<u8>,
    ) -> io::Result<Option<TcpStream>> {
        let keep_alive = self.connections == Connections::KeepAlive;
        let mut stream = match kept {
            Some(stream) => stream,
            None => connect(self.port)?,
        };
        buffer.clear();
        match self.protocol {
            Protocol::Http if keep_alive => {
                stream.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")?;
                read_http_response(&mut stream, buffer)?;
            }
            Protocol::Http => {
                stream.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")?;
                stream.read_to_end(buffer)?;
                check_status(buffer)?;
            }
            Protocol::RedisPing => {
                stream.write_all(b"*1\r\n$4\r\nPING\r\n")?;
                read_until_end(&mut stream, buffer, b"+PONG\r\n")?;
            }
            Protocol::Greeting => {
                stream.read_to_end(buffer)?;
                if buffer.last() != Some(&b'\n') {
                    return Err(invalid("incomplete greeting"));
                }
            }
        }
        Ok(keep_alive.then_some(stream))
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Reads into `buffer` until it ends with `end` (the whole expected reply).
fn read_until_end(stream: &mut TcpStream, buffer: &mut Vec<u8>, end: &[u8]) -> io::Result<()> {
    let mut chunk = [0u8; 512];
    while !buffer.ends_with(end) {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(invalid("connection closed before the reply"));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

fn check_status(response: &[u8]) -> io::Result<()> {
    let status_line = response.split(|&b| b == b'\n').next().unwrap_or_default();
    if status_line.starts_with(b"HTTP/1.") && status_line.get(8..13) == Some(b" 200 ") {
        Ok(())
    } else {
        Err(invalid(&format!(
            "unexpected reply {:?}",
            String::from_utf8_lossy(status_line).trim_end()
        )))
    }
}

/// Reads one HTTP response with a `Content-Length` body.
fn read_http_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            check_status(buffer)?;
            let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .ok_or_else(|| invalid("no Content-Length in the reply"))?;
            if buffer.len() >= head_end + 4 + length {
                return Ok(());
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(invalid("connection closed before the reply"));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Connects to acceptbench on `port` and returns its greeting.
pub fn greet(port: u16) -> io::Result<String> {
    let mut stream = connect(port)?;
    let mut greeting = String::new();
    stream.read_to_string(&mut greeting)?;
    Ok(greeting)
}
