//! The route table: every HTTP route, the Lambda function that serves it, and path matching for
//! the local server. `template.yaml` declares the same routes (a test checks they agree).

use std::collections::HashMap;

/// One REST operation. Alias paths of an operation map to the same variant (and function).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Banner,
    SendMessage,
    ListConversations,
    ListArchivedConversations,
    GetConversation,
    ConversationMessages,
    DeleteConversation,
    ReadConversation,
    CreateGroup,
    GetGroup,
    UpdateGroup,
    UpdateGroupAttributes,
    JoinGroup,
    LeaveGroup,
    SetMembers,
    ListWebhooks,
    GetWebhook,
    PutWebhook,
    DeleteWebhook,
}

impl Route {
    /// The function package (under `functions/`) that serves this route on Lambda.
    pub fn function(self) -> &'static str {
        match self {
            Route::Banner => "banner",
            Route::SendMessage => "send-message",
            Route::ListConversations => "list-conversations",
            Route::ListArchivedConversations => "list-archived-conversations",
            Route::GetConversation => "get-conversation",
            Route::ConversationMessages => "conversation-messages",
            Route::DeleteConversation => "delete-conversation",
            Route::ReadConversation => "read-conversation",
            Route::CreateGroup => "create-group",
            Route::GetGroup => "get-group",
            Route::UpdateGroup => "update-group",
            Route::UpdateGroupAttributes => "update-group-attributes",
            Route::JoinGroup => "join-group",
            Route::LeaveGroup => "leave-group",
            Route::SetMembers => "set-members",
            Route::ListWebhooks => "list-webhooks",
            Route::GetWebhook => "get-webhook",
            Route::PutWebhook => "put-webhook",
            Route::DeleteWebhook => "delete-webhook",
        }
    }

    /// Whether the operation publishes events to the topic (its function gets `sns:Publish` in
    /// `template.yaml`, a test checks they agree). The others run without an SNS client and
    /// without `TOPIC_ARN`.
    pub fn publishes_events(self) -> bool {
        match self {
            Route::Banner
            | Route::ListConversations
            | Route::ListArchivedConversations
            | Route::GetConversation
            | Route::ConversationMessages
            | Route::ReadConversation
            | Route::ListWebhooks
            | Route::GetWebhook
            | Route::PutWebhook
            | Route::DeleteWebhook
            // The message's write is its event: deliver publishes `message-sent`.
            | Route::SendMessage => false,
            Route::DeleteConversation
            | Route::CreateGroup
            // Finishes a group change left half-done, which announces it.
            | Route::GetGroup
            | Route::UpdateGroup
            | Route::UpdateGroupAttributes
            | Route::JoinGroup
            | Route::LeaveGroup
            | Route::SetMembers => true,
        }
    }
}

pub struct RouteDef {
    pub method: &'static str,
    pub path: &'static str,
    pub route: Route,
}

const fn def(method: &'static str, path: &'static str, route: Route) -> RouteDef {
    RouteDef {
        method,
        path,
        route,
    }
}

pub const ROUTES: &[RouteDef] = &[
    def("GET", "/", Route::Banner),
    def("POST", "/api/{app_id}/messages", Route::SendMessage),
    def(
        "GET",
        "/api/{app_id}/{user_id}/conversations",
        Route::ListConversations,
    ),
    def(
        "GET",
        "/api/{app_id}/{user_id}/conversations/archived",
        Route::ListArchivedConversations,
    ),
    def(
        "GET",
        "/api/{app_id}/{user_id}/archived_conversations",
        Route::ListArchivedConversations,
    ),
    def(
        "GET",
        "/api/{app_id}/{user_id}/conversations/{convers_with}",
        Route::GetConversation,
    ),
    def(
        "GET",
        "/api/{app_id}/{user_id}/archived_conversations/{convers_with}",
        Route::GetConversation,
    ),
    def(
        "GET",
        "/api/{app_id}/{user_id}/conversations/{convers_with}/messages",
        Route::ConversationMessages,
    ),
    def(
        "DELETE",
        "/api/{app_id}/conversations/{recipient_id}",
        Route::DeleteConversation,
    ),
    def(
        "POST",
        "/api/{app_id}/{user_id}/conversations/{convers_with}/read",
        Route::ReadConversation,
    ),
    def("POST", "/api/{app_id}/groups", Route::CreateGroup),
    def("GET", "/api/{app_id}/groups/{group_id}", Route::GetGroup),
    def("PUT", "/api/{app_id}/groups/{group_id}", Route::UpdateGroup),
    def(
        "PUT",
        "/api/{app_id}/groups/{group_id}/attributes",
        Route::UpdateGroupAttributes,
    ),
    def(
        "POST",
        "/api/{app_id}/groups/{group_id}/members",
        Route::JoinGroup,
    ),
    def(
        "DELETE",
        "/api/{app_id}/groups/{group_id}/members/{member_id}",
        Route::LeaveGroup,
    ),
    def(
        "PUT",
        "/api/{app_id}/groups/{group_id}/members",
        Route::SetMembers,
    ),
    def("GET", "/api/{app_id}/webhooks", Route::ListWebhooks),
    def(
        "GET",
        "/api/{app_id}/webhooks/{webhook_id}",
        Route::GetWebhook,
    ),
    def(
        "PUT",
        "/api/{app_id}/webhooks/{webhook_id}",
        Route::PutWebhook,
    ),
    def(
        "DELETE",
        "/api/{app_id}/webhooks/{webhook_id}",
        Route::DeleteWebhook,
    ),
];

/// What the router found for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    Found(Route, HashMap<String, String>),
    /// The path exists, the method does not; these methods do.
    MethodNotAllowed(Vec<&'static str>),
    NotFound,
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// Matches a request path (raw, percent-encoded) like API Gateway does: literal segments win
/// over parameters, leftmost first; parameter values are percent-decoded.
pub fn find(method: &str, path: &str) -> Match {
    let actual = segments(path);
    let mut best: Option<(Vec<bool>, &RouteDef, HashMap<String, String>)> = None;
    let mut allowed: Vec<&'static str> = Vec::new();
    for def in ROUTES {
        let pattern = segments(def.path);
        if pattern.len() != actual.len() {
            continue;
        }
        let mut params = HashMap::new();
        let mut literal = Vec::with_capacity(pattern.len());
        let matched = pattern.iter().zip(&actual).all(|(p, a)| {
            if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                literal.push(false);
                let value = percent_encoding::percent_decode_str(a).decode_utf8_lossy();
                params.insert(name.to_string(), value.into_owned());
                true
            } else {
                literal.push(true);
                p == a
            }
        });
        if !matched {
            continue;
        }
        if !allowed.contains(&def.method) {
            allowed.push(def.method);
        }
        if def.method != method {
            continue;
        }
        if best.as_ref().is_none_or(|(score, ..)| literal > *score) {
            best = Some((literal, def, params));
        }
    }
    match best {
        Some((_, def, params)) => Match::Found(def.route, params),
        None if !allowed.is_empty() => Match::MethodNotAllowed(allowed),
        None => Match::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(method: &str, path: &str) -> (Route, HashMap<String, String>) {
        match find(method, path) {
            Match::Found(route, params) => (route, params),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn literal_segments_win() {
        assert_eq!(
            found("GET", "/api/a/u/conversations/archived").0,
            Route::ListArchivedConversations
        );
        assert_eq!(
            found("GET", "/api/a/u/conversations/bob").0,
            Route::GetConversation
        );
        assert_eq!(
            found("PUT", "/api/a/groups/g1/members").0,
            Route::SetMembers
        );
        assert_eq!(
            found("PUT", "/api/a/groups/g1/attributes").0,
            Route::UpdateGroupAttributes
        );
        assert_eq!(found("GET", "/").0, Route::Banner);
        assert_eq!(found("GET", "/api/a/webhooks").0, Route::ListWebhooks);
        let (route, params) = found("PUT", "/api/a/webhooks/w1");
        assert_eq!(
            (route, params["webhook_id"].as_str()),
            (Route::PutWebhook, "w1")
        );
        // As on API Gateway, the literal segment wins: a user named `webhooks` loses this one.
        assert_eq!(
            found("GET", "/api/a/webhooks/conversations").0,
            Route::GetWebhook
        );
    }

    #[test]
    fn params_are_extracted_and_decoded() {
        let (route, params) = found("GET", "/api/app1/user%20one/conversations/bob/messages");
        assert_eq!(route, Route::ConversationMessages);
        assert_eq!(params["app_id"], "app1");
        assert_eq!(params["user_id"], "user one");
        assert_eq!(params["convers_with"], "bob");
    }

    #[test]
    fn unknown_paths_and_methods() {
        assert_eq!(
            find("GET", "/api/a/messages"),
            Match::MethodNotAllowed(vec!["POST"])
        );
        assert_eq!(find("GET", "/nope"), Match::NotFound);
        assert_eq!(
            find("PATCH", "/api/a/groups/g"),
            Match::MethodNotAllowed(vec!["GET", "PUT"])
        );
    }
}
