//! Starting the binary: without `JWT_KEY` it prints a development key and a working example;
//! an invalid port stops it with a message.

use std::io::Read;
use std::process::Stdio;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{KEY, STARTUP, Server, assert_error, command, find, start_with, token};

#[test]
fn without_jwt_key_a_development_key_and_a_working_example_are_printed() {
    let server = start_with(command());
    let mut printed = Vec::new();
    let deadline = Instant::now() + STARTUP;
    while !printed.iter().any(|l: &String| l.contains("curl")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match server.lines.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(e) => panic!("no curl example printed ({e:?}); got {printed:?}"),
        }
    }
    let at = printed
        .iter()
        .position(|l| l.starts_with("Example token"))
        .unwrap_or_else(|| panic!("no example token in {printed:?}"));
    let example = printed
        .get(at + 1)
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| panic!("no token after {printed:?}"));
    assert_eq!(example.split('.').count(), 3, "not a JWT: {example:?}");
    let curl = printed.iter().find(|l| l.contains("curl")).unwrap();
    assert!(
        curl.contains(&format!("http://127.0.0.1:{}/api/default/", server.port)),
        "{curl}"
    );
    // The rest of the curl command (headers and body) follows on the next lines.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !printed.iter().any(|l| l.contains("-d '")) && Instant::now() < deadline {
        if let Ok(line) = server.lines.recv_timeout(Duration::from_millis(100)) {
            printed.push(line);
        }
    }
    let all = printed.join("\n");
    assert!(all.contains(&format!("Authorization: {example}")), "{all}");

    // The token works: the example request, and a read of the token's own conversations.
    let body = json!({"sender_fullname": "User One", "recipient_id": "user-2",
                      "recipient_fullname": "User Two", "text": "hello"});
    let sent = server.expect(200, "POST", "/api/default/messages", &example, Some(body));
    assert_eq!(sent["message"]["sender"], "user-1", "{sent}");
    let list = server.result("/api/default/user-1/conversations", &example);
    assert!(find(&list, "conversWith", "user-2").is_some(), "{list:?}");
    // A token signed with the test key is not accepted by the development key.
    let other = server.call(
        "GET",
        "/api/default/user-1/conversations",
        Some(&token("user-1", "default", false)),
        None,
    );
    assert_error(&other, 401);
}

#[test]
fn an_invalid_port_stops_the_binary_with_a_message() {
    let mut command = command();
    command
        .env("PORT", "notaport")
        .env("JWT_KEY", KEY)
        .stdout(Stdio::null());
    let child = command.spawn().expect("start chat21-local");
    let mut server = Server {
        child,
        port: 0,
        ws_port: 0,
        tcp_port: 0,
        lines: channel().1,
        log: Default::default(),
    };
    let deadline = Instant::now() + STARTUP;
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running with PORT=notaport"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "{status}");
    let mut stderr = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("PORT") && stderr.contains("notaport"),
        "stderr: {stderr:?}"
    );
}
