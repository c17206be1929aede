//! The server: the release binary (built through cargo first; `CHAT21_LOCAL_BIN` overrides it),
//! started on free ports, killed when dropped.

use super::*;

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) pid: String,
    pub(crate) http: u16,
    pub(crate) ws: u16,
    /// Lines the server wrote on stderr (RUST_LOG=warn: warnings and errors).
    pub(crate) warnings: Arc<AtomicUsize>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn server_binary() -> Res<PathBuf> {
    if let Ok(bin) = std::env::var("CHAT21_LOCAL_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target"));
    let bin = target.join("release/chat21-local");
    // Always through cargo: a no-op when the binary is current, never a stale server.
    eprintln!("building the release server (cargo build --release -p chat21-local) ...");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "chat21-local"])
        .current_dir(manifest.join(".."))
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err("cargo build --release -p chat21-local failed".into());
    }
    Ok(bin)
}

pub(crate) fn start_server(bin: &PathBuf) -> Res<Server> {
    let mut child = Command::new(bin)
        .env("PORT", "0")
        .env("MQTT_WS_PORT", "0")
        .env("MQTT_TCP_PORT", "0")
        .env("JWT_KEY", JWT_KEY)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let pid = child.id().to_string();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (lines, ports) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let warnings = Arc::new(AtomicUsize::new(0));
    let counted = warnings.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Shown, but not flooding: the first 20, then only counted.
            if counted.fetch_add(1, Ordering::Relaxed) < 20 {
                eprintln!("  [server] {line}");
            }
        }
    });
    let mut server = Server {
        child,
        pid,
        http: 0,
        ws: 0,
        warnings,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.http == 0 || server.ws == 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = ports
            .recv_timeout(left)
            .map_err(|_| "the server did not print its ports".to_string())?;
        let port_after = |prefix: &str| -> Option<u16> {
            let rest = line.split(prefix).nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        if line.contains("MQTT over WebSocket") {
            server.ws = port_after("ws://127.0.0.1:").unwrap_or(0);
        } else if line.contains("listening on http://") {
            server.http = port_after("http://127.0.0.1:").unwrap_or(0);
        }
    }
    Ok(server)
}
