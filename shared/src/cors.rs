//! CORS: browsers on other origins (Chat21's web widget, any web app) may call the API. On AWS
//! the HTTP API applies it (`CorsConfiguration` in template.yaml, with these same methods,
//! headers and max age, and the `CorsAllowOrigins` parameter); `chat21-local` applies it
//! itself, with `CORS_ALLOW_ORIGINS`.

use http::{HeaderMap, HeaderValue, header};

pub const ALLOW_METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "OPTIONS"];
pub const ALLOW_HEADERS: [&str; 2] = ["Authorization", "Content-Type"];
pub const MAX_AGE_SECS: u32 = 600;

/// The allowed origins: any (`*`), or a list of exact origins (`https://app.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    any: bool,
    origins: Vec<String>,
}

impl Default for Cors {
    fn default() -> Cors {
        Cors {
            any: true,
            origins: Vec::new(),
        }
    }
}

impl Cors {
    /// A comma-separated list of origins, or `*`.
    pub fn from_list(list: &str) -> Result<Cors, String> {
        let mut cors = Cors {
            any: false,
            origins: Vec::new(),
        };
        for origin in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if origin == "*" {
                cors.any = true;
            } else if let Some((scheme, host)) = origin.split_once("://")
                && matches!(scheme, "http" | "https")
                && !host.is_empty()
                && !host.contains('/')
            {
                cors.origins.push(origin.to_string());
            } else {
                return Err(format!(
                    "{origin:?} is not an origin (scheme://host[:port]) or *"
                ));
            }
        }
        if !cors.any && cors.origins.is_empty() {
            return Err("no origin given (use * to allow any)".into());
        }
        Ok(cors)
    }

    /// `Access-Control-Allow-Origin` for a request from `origin`, if it is allowed.
    fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let origin = origin?;
        let listed = origin
            .to_str()
            .is_ok_and(|o| self.origins.iter().any(|allowed| allowed == o));
        listed.then(|| origin.clone())
    }

    /// Whether a request is a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`).
    pub fn is_preflight(method: &http::Method, headers: &HeaderMap) -> bool {
        method == http::Method::OPTIONS
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The headers of a preflight's answer (204): empty when the origin is not allowed.
    pub fn preflight_headers(&self, request: &HeaderMap) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(origin) = self.allow_origin(request.get(header::ORIGIN)) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET,POST,PUT,DELETE,OPTIONS"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization,content-type"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(MAX_AGE_SECS),
            );
        }
        if !self.any {
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        headers
    }

    /// Adds the CORS headers of an ordinary answer to a request with these headers.
    pub fn decorate(&self, request: &HeaderMap, response: &mut HeaderMap) {
        if let Some(origin) = self.allow_origin(request.get(header::ORIGIN)) {
            response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        }
        if !self.any {
            response.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        h
    }

    #[test]
    fn any_origin_by_default() {
        let cors = Cors::default();
        let h = cors.preflight_headers(&from("https://widget.example"));
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "600");
        assert!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .unwrap()
                .contains("authorization")
        );
        assert_eq!(Cors::from_list("*").unwrap(), cors);
    }

    #[test]
    fn a_list_echoes_only_listed_origins() {
        let cors = Cors::from_list("https://a.example, http://localhost:4200").unwrap();
        let mut out = HeaderMap::new();
        cors.decorate(&from("http://localhost:4200"), &mut out);
        assert_eq!(
            out[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:4200"
        );
        assert_eq!(out[header::VARY], "Origin");
        let mut out = HeaderMap::new();
        cors.decorate(&from("https://evil.example"), &mut out);
        assert!(out.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        let h = cors.preflight_headers(&from("https://evil.example"));
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_METHODS).is_none());
    }

    #[test]
    fn bad_lists_are_refused() {
        for bad in [
            "",
            " , ",
            "example.com",
            "ftp://x",
            "https://a.example/path",
        ] {
            assert!(Cors::from_list(bad).is_err(), "{bad:?}");
        }
    }
}
