//! Where webhooks go: endpoint URLs (validated the same way for `WEBHOOK_ENDPOINTS` and for
//! the endpoints admins register), event filters, the operator's host allow-list, and the
//! deployment-wide configuration.

use crate::error::{Error, Result};
use crate::model::EventType;
use crate::ops::webhooks::signing::Secret;

/// Longest endpoint URL.
pub const MAX_URL_CHARS: usize = 2048;

/// Checks an endpoint URL: `http` or `https`, a host, no credentials (`user:pass@`), no
/// fragment, no spaces or control characters, at most [`MAX_URL_CHARS`]. Returns it as given.
pub fn validate_url(field: &str, url: &str) -> Result<String> {
    let bad = |why: &str| Error::bad_request(format!("`{field}` {why}"));
    if url.is_empty() {
        return Err(bad("must not be empty"));
    }
    if url.chars().count() > MAX_URL_CHARS {
        return Err(bad(&format!("is longer than {MAX_URL_CHARS} characters")));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not contain spaces or control characters"));
    }
    if url.contains('#') {
        return Err(bad("must not have a fragment (`#…`)"));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|_| bad("is not a URL (e.g. https://example.com/chat21-events)"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("must be an http:// or https:// URL")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| bad("must name a host"))?
        .as_str();
    if authority.contains('@') {
        return Err(bad("must not carry credentials (`user:password@`)"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("must name a host"));
    }
    Ok(url.to_string())
}

/// The host of a validated URL, lowercase, without brackets (IPv6) or port.
fn host_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    Some(host.to_ascii_lowercase())
}

/// `WEBHOOK_ALLOWED_HOSTS`: the hosts tenants' endpoints may point at, as exact names or
/// `*.example.com` for any subdomain; unset, any host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowedHosts(Option<Vec<String>>);

impl AllowedHosts {
    pub fn any() -> AllowedHosts {
        AllowedHosts(None)
    }

    /// A comma-separated list (blank: any host).
    pub fn parse(list: &str) -> std::result::Result<AllowedHosts, String> {
        let hosts: Vec<String> = list
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if let Some(bad) = hosts.iter().find(|h| {
            let name = h.strip_prefix("*.").unwrap_or(h);
            name.is_empty()
                || name
                    .chars()
                    .any(|c| !(c.is_ascii_alphanumeric() || "-.:_".contains(c)))
        }) {
            return Err(format!("{bad:?} is not a host name"));
        }
        Ok(AllowedHosts((!hosts.is_empty()).then_some(hosts)))
    }

    /// Whether a (validated) URL points at an allowed host.
    pub fn allows(&self, url: &str) -> bool {
        let Some(hosts) = &self.0 else {
            return true;
        };
        let Some(host) = host_of(url) else {
            return false;
        };
        hosts
            .iter()
            .any(|allowed| match allowed.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                None => *allowed == host,
            })
    }
}

/// A comma-separated list of event type names; blank means every type.
pub fn parse_events(list: &str) -> std::result::Result<Vec<EventType>, String> {
    let mut events = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let kind = EventType::parse(name).ok_or_else(|| {
            format!(
                "{name:?} is not an event type (one of {})",
                EventType::ALL.map(EventType::as_str).join(", ")
            )
        })?;
        if !events.contains(&kind) {
            events.push(kind);
        }
    }
    Ok(if events.is_empty() {
        EventType::ALL.to_vec()
    } else {
        events
    })
}

/// The deployment's webhooks (Chat21's configuration): `WEBHOOK_ENDPOINTS`,
/// `WEBHOOK_EVENTS`, `WEBHOOK_SECRET`, and `WEBHOOK_ALLOWED_HOSTS` for tenants' endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Every event of [`WebhookConfig::events`] is POSTed to each of these.
    pub endpoints: Vec<String>,
    /// The event types webhooks deliver at all (the webhooks queue's subscription filter):
    /// global endpoints get every one of them, tenants' endpoints those their filter names.
    pub events: Vec<EventType>,
    /// Signs the POSTs to the global endpoints (unsigned without one).
    pub secret: Option<Secret>,
    pub allowed_hosts: AllowedHosts,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            endpoints: Vec::new(),
            events: EventType::ALL.to_vec(),
            secret: None,
            allowed_hosts: AllowedHosts::any(),
        }
    }
}

impl WebhookConfig {
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<WebhookConfig, String> {
        let shown = |e: Error| e.to_string();
        let mut endpoints = Vec::new();
        for url in get("WEBHOOK_ENDPOINTS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            let url = validate_url("WEBHOOK_ENDPOINTS", url).map_err(shown)?;
            if !endpoints.contains(&url) {
                endpoints.push(url);
            }
        }
        let events = parse_events(&get("WEBHOOK_EVENTS").unwrap_or_default())
            .map_err(|e| format!("WEBHOOK_EVENTS: {e}"))?;
        let secret = match get("WEBHOOK_SECRET").as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(Secret::parse("WEBHOOK_SECRET", text).map_err(shown)?),
        };
        let allowed_hosts = AllowedHosts::parse(&get("WEBHOOK_ALLOWED_HOSTS").unwrap_or_default())
            .map_err(|e| format!("WEBHOOK_ALLOWED_HOSTS: {e}"))?;
        Ok(WebhookConfig {
            endpoints,
            events,
            secret,
            allowed_hosts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_with_a_host_and_nothing_hidden() {
        for good in [
            "https://example.com/hook",
            "http://127.0.0.1:8080/chat21?token=x",
            "https://[::1]:9000/",
            "HTTPS://Example.com",
        ] {
            assert_eq!(validate_url("url", good).unwrap(), good);
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        for bad in [
            "",
            "example.com/hook",
            "ftp://example.com/",
            "file:///etc/passwd",
            "https://user:pass@example.com/",
            "https://user@example.com/",
            "https://example.com/a b",
            "https://example.com/\n",
            "https://example.com/#frag",
            "https:///path",
            "/relative",
            "javascript:alert(1)",
            &long,
        ] {
            let e = validate_url("url", bad).unwrap_err();
            assert_eq!(e.status(), 400, "{bad:?}");
            assert!(e.to_string().starts_with("`url`"), "{e}");
        }
    }

    #[test]
    fn allowed_hosts_are_exact_or_subdomains() {
        assert!(AllowedHosts::any().allows("https://anything.example/"));
        let hosts = AllowedHosts::parse(" 127.0.0.1, *.tiledesk.com ,").unwrap();
        assert!(hosts.allows("http://127.0.0.1:9/x"));
        assert!(hosts.allows("https://api.tiledesk.com/webhooks"));
        assert!(hosts.allows("https://A.B.Tiledesk.com/"));
        for refused in [
            "https://tiledesk.com/",
            "https://eviltiledesk.com/",
            "http://localhost/",
            "http://127.0.0.2/",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        assert_eq!(AllowedHosts::parse("  ,").unwrap(), AllowedHosts::any());
        assert!(AllowedHosts::parse("a b").is_err());
        assert!(AllowedHosts::parse("*.").is_err());
    }

    #[test]
    fn the_configuration_reads_chat21s_variables() {
        let none = WebhookConfig::from_lookup(|_| None).unwrap();
        assert_eq!(none, WebhookConfig::default());
        assert_eq!(none.events.len(), EventType::ALL.len());
        let vars = |k: &str| match k {
            "WEBHOOK_ENDPOINTS" => Some(" http://a.example/1 ,https://b.example/2,".into()),
            "WEBHOOK_EVENTS" => Some("message-sent, presence-change,message-sent".into()),
            "WEBHOOK_SECRET" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            _ => None,
        };
        let c = WebhookConfig::from_lookup(vars).unwrap();
        assert_eq!(c.endpoints, ["http://a.example/1", "https://b.example/2"]);
        assert_eq!(
            c.events,
            [EventType::MessageSent, EventType::PresenceChange]
        );
        assert!(c.secret.is_some());
        for (name, value) in [
            ("WEBHOOK_ENDPOINTS", "ftp://x"),
            ("WEBHOOK_EVENTS", "message-sent,nope"),
            ("WEBHOOK_SECRET", "short"),
            ("WEBHOOK_ALLOWED_HOSTS", "a/b"),
        ] {
            let e = WebhookConfig::from_lookup(|k| (k == name).then(|| value.to_string()));
            assert!(e.unwrap_err().contains(name), "{name}");
        }
    }
}
