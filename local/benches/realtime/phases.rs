//! The phases: memory per idle connection, end-to-end latency of direct messages, a group
//! message's fan-out.

use super::*;

pub(crate) struct Memory {
    pub(crate) before_kb: u64,
    pub(crate) after_kb: u64,
    pub(crate) per_conn_kb: f64,
    pub(crate) connect_secs: f64,
    pub(crate) bench_per_conn_kb: f64,
}

pub(crate) struct Latency {
    pub(crate) sent: usize,
    pub(crate) non_ok: usize,
    pub(crate) lost: usize,
    pub(crate) duplicates: usize,
    pub(crate) misrouted: usize,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) http_p50: f64,
    pub(crate) http_p99: f64,
    pub(crate) rate: f64,
}

pub(crate) struct FanOut {
    pub(crate) rounds: usize,
    pub(crate) members: usize,
    pub(crate) setup_secs: f64,
    pub(crate) drain_secs: f64,
    pub(crate) last_median: f64,
    pub(crate) last_max: f64,
    pub(crate) first_median: f64,
    pub(crate) http_median: f64,
    pub(crate) lost: usize,
    pub(crate) duplicates: usize,
    /// (HTTP answer, send → first member, send → last member) per round, in order.
    pub(crate) per_round: Vec<(f64, f64, f64)>,
    /// Server RSS once the group is built and its deliveries are done (kB).
    pub(crate) rss_after_setup_kb: u64,
}

/// Sends `n` direct messages over `IN_FLIGHT` keep-alive connections, from users that are not
/// connected (so only the recipient's copy is published) to random connected users; waits for
/// their `clientadded` and matches them by `message_id`.
pub(crate) async fn direct_messages(
    server: &Server,
    hub: &Arc<Hub>,
    users: &[String],
    n: usize,
    prefix: &str,
) -> Res<Latency> {
    hub.take();
    let next = Arc::new(AtomicUsize::new(0));
    let users = Arc::new(users.to_vec());
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..IN_FLIGHT {
        let (next, users, prefix) = (next.clone(), users.clone(), prefix.to_string());
        let sender_token = token(&format!("sender-{w}"));
        let mut http = Http::connect(server.http).await?;
        workers.push(tokio::spawn(async move {
            // (message id, recipient index, send start, HTTP answer time, status)
            let mut sends: Vec<(String, u32, Instant, Duration, u16)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let to = (splitmix(i as u64 ^ 0x5EED) % users.len() as u64) as u32;
                let id = format!("{prefix}-{i:06}");
                let body = send_body(&users[to as usize], &id, "a benchmark message");
                let start = Instant::now();
                let status = match http
                    .call(
                        "POST",
                        &format!("/api/{APP}/messages"),
                        &sender_token,
                        &body,
                    )
                    .await
                {
                    Ok((status, _)) => status,
                    Err(e) => return Err(e),
                };
                sends.push((id, to, start, start.elapsed(), status));
            }
            Ok::<_, String>(sends)
        }));
    }
    let mut sends = Vec::with_capacity(n);
    for worker in workers {
        sends.extend(worker.await.map_err(|e| e.to_string())??);
    }
    let send_secs = started.elapsed().as_secs_f64();
    let ok = sends.iter().filter(|s| s.4 == 200 || s.4 == 201).count();
    hub.wait_for(ok, Duration::from_secs(15)).await;
    // Room for duplicates to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let arrivals = hub.take();
    let mut by_id: HashMap<&str, Vec<&Arrival>> = HashMap::new();
    for a in &arrivals {
        by_id.entry(a.message_id.as_str()).or_default().push(a);
    }
    let (mut lost, mut duplicates, mut misrouted, mut non_ok) = (0, 0, 0, 0);
    let mut latencies = Vec::with_capacity(n);
    let mut http_times = Vec::with_capacity(n);
    for (id, to, start, http_time, status) in &sends {
        http_times.push(ms(*http_time));
        if *status != 200 && *status != 201 {
            non_ok += 1;
            continue;
        }
        let got = by_id.get(id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let mine: Vec<&&Arrival> = got.iter().filter(|a| a.user == *to).collect();
        misrouted += got.len() - mine.len();
        match mine.iter().map(|a| a.at).min() {
            None => lost += 1,
            Some(first) => {
                duplicates += mine.len() - 1;
                latencies.push(ms(first.saturating_duration_since(*start)));
            }
        }
    }
    let latencies = sorted(latencies);
    let http_times = sorted(http_times);
    Ok(Latency {
        sent: sends.len(),
        non_ok,
        lost,
        duplicates,
        misrouted,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or(f64::NAN),
        http_p50: percentile(&http_times, 0.50),
        http_p99: percentile(&http_times, 0.99),
        rate: sends.len() as f64 / send_secs,
    })
}

/// Creates a group of every user (`users[0]` its owner): 98 members per call, the most allowed.
pub(crate) async fn create_group(http: &mut Http, owner_token: &str, users: &[String]) -> Res<()> {
    let mut members: Vec<&String> = Vec::new();
    // The owner counts as a member (and as a change) of the create call.
    let first = users.len().min(MEMBER_CHANGES);
    let group_members: serde_json::Map<String, Value> = users[1..first]
        .iter()
        .map(|u| (u.clone(), json!(1)))
        .collect();
    let body =
        json!({ "group_name": "Bench fan-out", "group_members": group_members, "group_id": GROUP });
    let (status, answer) = http
        .call(
            "POST",
            &format!("/api/{APP}/groups"),
            owner_token,
            &body.to_string(),
        )
        .await?;
    if status != 200 && status != 201 {
        return Err(format!("group create: {status} {answer}"));
    }
    members.extend(&users[..first]);
    let mut at = first;
    while at < users.len() {
        let end = (at + MEMBER_CHANGES).min(users.len());
        members.extend(&users[at..end]);
        let all: serde_json::Map<String, Value> =
            members.iter().map(|u| ((*u).clone(), json!(1))).collect();
        let body = json!({ "members": all }).to_string();
        let (status, answer) = http
            .call(
                "PUT",
                &format!("/api/{APP}/groups/{GROUP}/members"),
                owner_token,
                &body,
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(format!("set members: {status} {answer}"));
        }
        at = end;
    }
    Ok(())
}

/// Waits until the server's deliver queue is empty: a direct message to a connected probe
/// arrives only after every event queued before it (one in-order deliver step). Twice: the
/// deliveries that ran while the first probe waited queued their `message-delivered` events
/// behind it (the local server drops them, but only when it reaches them).
pub(crate) async fn drain(
    server: &Server,
    hub: &Arc<Hub>,
    http: &mut Http,
    label: &str,
) -> Res<f64> {
    let probe = vec!["probe".to_string()];
    let fleet = Fleet::connect(server.ws, &probe, &[token("probe")], hub, 999).await?;
    hub.take();
    let started = Instant::now();
    for pass in 0..2 {
        let body = send_body("probe", &format!("drain-{label}-{pass}"), "drain");
        let (status, answer) = http
            .call(
                "POST",
                &format!("/api/{APP}/messages"),
                &token("sender-0"),
                &body,
            )
            .await?;
        if status != 200 && status != 201 {
            fleet.close().await;
            return Err(format!("drain probe: {status} {answer}"));
        }
        if !hub.wait_for(pass + 1, Duration::from_secs(300)).await {
            fleet.close().await;
            return Err("the deliver queue did not drain within 300 s".into());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    fleet.close().await;
    hub.take();
    Ok(secs)
}

pub(crate) async fn fan_out(
    server: &Server,
    hub: &Arc<Hub>,
    users: &[String],
    tokens: &[String],
    rounds: usize,
    cpu: &mut Vec<PhaseCpu>,
) -> Res<FanOut> {
    let owner_token = &tokens[0];
    let mut http = Http::connect(server.http).await?;
    // Built with nobody connected: its ~1,000 system messages and join histories go to the
    // store only, and the fleet reconnects once the deliver queue is empty again.
    let c0 = Cpu::now(&server.pid);
    let started = Instant::now();
    create_group(&mut http, owner_token, users).await?;
    let setup_secs = started.elapsed().as_secs_f64();
    let drain_secs = drain(server, hub, &mut http, "group").await?;
    let rss_after_setup_kb = rss_kb(&server.pid);
    cpu.push(phase(
        "group setup (HTTP, nobody connected) + deliver queue drain",
        c0,
        Cpu::now(&server.pid),
    ));

    let fleet = Fleet::connect(server.ws, users, tokens, hub, 2).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    hub.take();
    let c1 = Cpu::now(&server.pid);
    let members = users.len();
    let (mut lasts, mut firsts, mut https) = (Vec::new(), Vec::new(), Vec::new());
    let mut per_round = Vec::new();
    let (mut lost, mut duplicates) = (0, 0);
    for round in 0..rounds {
        hub.take();
        let id = format!("fan-{round:03}");
        let body = send_body(GROUP, &id, "a benchmark group message");
        let start = Instant::now();
        let (status, answer) = http
            .call("POST", &format!("/api/{APP}/messages"), owner_token, &body)
            .await?;
        let http_ms = ms(start.elapsed());
        https.push(http_ms);
        if status != 200 && status != 201 {
            fleet.close().await;
            return Err(format!("group send: {status} {answer}"));
        }
        hub.wait_for(members, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let arrivals = hub.take();
        let mut per_member = vec![0usize; members];
        let (mut first, mut last) = (None::<Instant>, None::<Instant>);
        for a in arrivals.iter().filter(|a| a.message_id == id) {
            per_member[a.user as usize] += 1;
            if per_member[a.user as usize] == 1 {
                first = Some(first.map_or(a.at, |f| f.min(a.at)));
                last = Some(last.map_or(a.at, |l| l.max(a.at)));
            }
        }
        lost += per_member.iter().filter(|&&c| c == 0).count();
        duplicates += per_member
            .iter()
            .map(|&c| c.saturating_sub(1))
            .sum::<usize>();
        if let (Some(first), Some(last)) = (first, last) {
            firsts.push(ms(first.saturating_duration_since(start)));
            lasts.push(ms(last.saturating_duration_since(start)));
            per_round.push((
                http_ms,
                ms(first.saturating_duration_since(start)),
                ms(last.saturating_duration_since(start)),
            ));
        } else {
            per_round.push((http_ms, f64::NAN, f64::NAN));
        }
    }
    cpu.push(phase(
        &format!("fan-out: {rounds} group messages to {members} members"),
        c1,
        Cpu::now(&server.pid),
    ));
    fleet.close().await;
    let (lasts, firsts, https) = (sorted(lasts), sorted(firsts), sorted(https));
    Ok(FanOut {
        rounds,
        members,
        setup_secs,
        drain_secs,
        last_median: percentile(&lasts, 0.5),
        last_max: lasts.last().copied().unwrap_or(f64::NAN),
        first_median: percentile(&firsts, 0.5),
        http_median: percentile(&https, 0.5),
        lost,
        duplicates,
        per_round,
        rss_after_setup_kb,
    })
}
