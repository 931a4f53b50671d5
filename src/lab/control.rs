//! The supervisor's control socket, `DIR/lab.sock`: one request line, one
//! answer line (`ok ...` or `error ...`).
//!
//! Requests: `kill A|B`, `start A|B`, `link down|up`,
//! `link throttle BYTES_PER_SEC|off`, `status`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{Lab, Site};

pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("lab.sock")
}

/// Carries out one request on the lab; the answer line without `ok`.
pub fn execute(lab: &Lab, line: &str) -> Result<String, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["kill", s] => {
            let s = Site::parse(s)?;
            lab.kill(s)?;
            Ok(format!("{} killed (SIGKILL)", s.name()))
        }
        ["start", s] => {
            let s = Site::parse(s)?;
            lab.start_site(s)?;
            Ok(format!("{} started and answering CIM-XML", s.name()))
        }
        ["link", "down"] => {
            lab.link(false);
            Ok("link down at the switch (traffic black-holed)".into())
        }
        ["link", "up"] => {
            lab.link(true);
            Ok("link up at the switch".into())
        }
        ["link", "throttle", "off"] => {
            lab.throttle(None);
            Ok("link throttle off".into())
        }
        ["link", "throttle", n] => {
            let rate: u64 = n
                .parse()
                .ok()
                .filter(|r| *r > 0)
                .ok_or_else(|| format!("{n}: give bytes per second (> 0) or off"))?;
            lab.throttle(Some(rate));
            Ok(format!("link throttled to {rate} bytes/s each way"))
        }
        ["status"] => {
            // Each array's own view of its link (what it reports over
            // CIM-XML), then the switch.
            let site = |s: Site| {
                if !lab.running(s) {
                    return format!("{} down", s.name());
                }
                match lab.link_reported(s) {
                    Ok(true) => format!("{} running, sees the link up", s.name()),
                    Ok(false) => format!("{} running, sees the link down", s.name()),
                    Err(e) => format!("{} running, not answering ({e})", s.name()),
                }
            };
            Ok(format!(
                "{}; {}; switch {}{}",
                site(Site::A),
                site(Site::B),
                if lab.switch.is_up() { "up" } else { "down" },
                lab.switch
                    .rate()
                    .map(|r| format!(", throttled to {r} bytes/s"))
                    .unwrap_or_default()
            ))
        }
        _ => Err(format!(
            "unknown request {line:?}; use kill A|B, start A|B, link down|up, link throttle N|off, status"
        )),
    }
}

/// Serves the control socket until the runtime stops.
pub async fn serve(lab: Arc<Lab>, listener: tokio::net::UnixListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let lab = lab.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(std_stream) = stream.into_std() else {
                return;
            };
            let _ = std_stream.set_nonblocking(false);
            let mut line = String::new();
            let mut r = BufReader::new(&std_stream);
            if r.read_line(&mut line).is_err() {
                return;
            }
            let answer = match execute(&lab, line.trim()) {
                Ok(t) => format!("ok {t}\n"),
                Err(e) => format!("error {e}\n"),
            };
            let mut w = &std_stream;
            let _ = w.write_all(answer.as_bytes());
        });
    }
}

/// Sends one request to the lab running in `dir`.
pub fn request(dir: &Path, line: &str) -> Result<String, String> {
    let path = socket_path(dir);
    let mut s = UnixStream::connect(&path).map_err(|e| {
        format!(
            "no lab is running in {} ({e}); start one with `replicim lab --dir {}`",
            dir.display(),
            dir.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    writeln!(s, "{line}").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(&s)
        .read_line(&mut answer)
        .map_err(|e| format!("the lab did not answer: {e}"))?;
    let answer = answer.trim_end();
    match answer.split_once(' ') {
        Some(("ok", rest)) => Ok(rest.to_string()),
        Some(("error", rest)) => Err(rest.to_string()),
        _ => Err(format!("unexpected answer from the lab: {answer:?}")),
    }
}
