//! HTTP glue shared by the Lambda functions and the local server: authentication, request
//! parsing, and the one place where results and errors become HTTP responses.

use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::{error, warn};

use crate::auth::{self, JwtVerifier};
use crate::error::{Error, Result};
use crate::ids::Id;
use crate::input::{self, Fields};
use crate::keys;
use crate::model::Caller;
use crate::ops::{Deps, conversations, groups, messages, webhooks};
use crate::ports::Page;
use crate::routes::Route;

pub const BANNER: &str = concat!(
    "Chat21 HTTP API (serverless Rust) v",
    env!("CARGO_PKG_VERSION"),
    "\n"
);

/// What the HTTP routes need: the operations' dependencies and the token verifier.
pub struct Api {
    pub deps: Deps,
    pub verifier: JwtVerifier,
}

/// Serves one request of `route`. Never fails: every error becomes the JSON error envelope.
pub async fn handle(api: &Api, route: Route, request: Request) -> Response<Body> {
    match serve(api, route, &request).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

pub fn error_response(e: &Error) -> Response<Body> {
    match e {
        Error::Internal(detail) => error!(%detail, "internal error"),
        Error::Unavailable(_) | Error::Throttled(_) => warn!(error = %e, "dependency failure"),
        _ => {}
    }
    json_response(e.status(), &e.envelope())
}

fn json_response(status: u16, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn ok(body: Value) -> Result<Response<Body>> {
    Ok(json_response(200, &body))
}

fn success() -> Result<Response<Body>> {
    ok(json!({ "success": true }))
}

fn list<T: Serialize>(page: Page<T>) -> Result<Response<Body>> {
    let mut body = json!({ "success": true, "result": page.items });
    if let Some(next) = page.next {
        body["next"] = json!(keys::encode_cursor(&next));
    }
    ok(body)
}

/// A path parameter. API Gateway always supplies the route's parameters; a missing one means
/// the request did not come through the route table.
fn param<'a>(request: &'a Request, name: &str) -> Result<&'a str> {
    request
        .path_parameters_ref()
        .and_then(|p| p.first(name))
        .ok_or_else(|| Error::bad_request(format!("missing path parameter `{name}`")))
}

/// A path parameter that is an id.
fn id(request: &Request, name: &str) -> Result<Id> {
    Id::parse(name, param(request, name)?)
}

fn query<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .query_string_parameters_ref()
        .and_then(|q| q.first(name))
}

fn caller(api: &Api, request: &Request) -> Result<Caller> {
    let app = param(request, "app_id")?;
    let header = match request.headers().get(http::header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            Error::Unauthorized("the Authorization header is not valid text".into())
        })?),
    };
    let token = auth::token_from(header, |name| query(request, name));
    auth::authenticate(&api.verifier, token, app)
}

/// The JSON body: at most 256 KiB, declared as JSON when a type is declared, an object.
fn fields(request: &Request) -> Result<Fields> {
    let body: &[u8] = request.body().as_ref();
    if body.len() > input::MAX_BODY_BYTES {
        return Fields::parse(body);
    }
    if !body.is_empty()
        && let Some(content_type) = request.headers().get(http::header::CONTENT_TYPE)
    {
        let content_type = content_type.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(Error::UnsupportedMediaType(format!(
                "the body must be JSON (Content-Type: application/json), not {essence:?}"
            )));
        }
    }
    Fields::parse(body)
}

async fn serve(api: &Api, route: Route, request: &Request) -> Result<Response<Body>> {
    let deps = &api.deps;
    if route == Route::Banner {
        // The banner function also serves API Gateway's catch-all route: only `GET /` is the
        // banner, anything else is an unknown route.
        if request.method() != http::Method::GET || request.uri().path() != "/" {
            return Err(Error::not_found("no such route"));
        }
        let mut response = Response::new(Body::Text(BANNER.to_string()));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return Ok(response);
    }
    let caller = &caller(api, request)?;
    match route {
        Route::Banner => Err(Error::not_found("no such route")),
        Route::SendMessage => {
            let input = messages::SendMessage::from_fields(&fields(request)?)?;
            let message = messages::send_message(deps, caller, input).await?;
            ok(json!({ "success": true, "message": message }))
        }
        Route::ListConversations | Route::ListArchivedConversations => {
            let archived = route == Route::ListArchivedConversations;
            let user = id(request, "user_id")?;
            let page =
                input::page_request(query(request, "limit"), query(request, "cursor"), |c| {
                    keys::conversation_position(c, archived)
                })?;
            list(conversations::list(deps, caller, user, archived, &page).await?)
        }
        Route::GetConversation => {
            let archived = request
                .uri()
                .path()
                .split('/')
                .any(|s| s == "archived_conversations");
            let (user, with) = (id(request, "user_id")?, id(request, "convers_with")?);
            let found = conversations::detail(deps, caller, user, &with, archived).await?;
            ok(json!({ "success": true, "result": found.into_iter().collect::<Vec<_>>() }))
        }
        Route::ConversationMessages => {
            let (user, with) = (id(request, "user_id")?, id(request, "convers_with")?);
            let page = input::page_request(
                query(request, "limit"),
                query(request, "cursor"),
                keys::message_position,
            )?;
            list(conversations::messages(deps, caller, user, &with, &page).await?)
        }
        Route::DeleteConversation => {
            let with = id(request, "recipient_id")?;
            let delete = query(request, "delete")
                .map(|v| input::parse_bool("delete", v))
                .transpose()?
                .unwrap_or(false);
            let user = fields(request)?.optional_id("user_id")?;
            if delete {
                conversations::delete(deps, caller, user, &with).await?;
            } else {
                conversations::archive(deps, caller, user, &with).await?;
            }
            success()
        }
        Route::ReadConversation => {
            let (user, with) = (id(request, "user_id")?, id(request, "convers_with")?);
            conversations::mark_read(deps, caller, user, &with).await?;
            success()
        }
        Route::CreateGroup => {
            let input = groups::CreateGroup::from_fields(&fields(request)?)?;
            let group = groups::create(deps, caller, input).await?;
            Ok(json_response(
                201,
                &json!({ "success": true, "group": group }),
            ))
        }
        Route::GetGroup => {
            let group = groups::get(deps, caller, &id(request, "group_id")?).await?;
            ok(json!({ "success": true, "result": group }))
        }
        Route::UpdateGroup => {
            let name = groups::rename_input(&fields(request)?)?;
            groups::rename(deps, caller, &id(request, "group_id")?, name).await?;
            success()
        }
        Route::UpdateGroupAttributes => {
            let attributes = groups::attributes_input(&fields(request)?)?;
            groups::set_attributes(deps, caller, &id(request, "group_id")?, attributes).await?;
            success()
        }
        Route::JoinGroup => {
            let member = groups::join_input(&fields(request)?)?;
            groups::join(deps, caller, &id(request, "group_id")?, member).await?;
            success()
        }
        Route::LeaveGroup => {
            let (group, member) = (id(request, "group_id")?, id(request, "member_id")?);
            groups::leave(deps, caller, &group, &member).await?;
            success()
        }
        Route::SetMembers => {
            let members = groups::set_members_input(&fields(request)?)?;
            groups::set_members(deps, caller, &id(request, "group_id")?, members).await?;
            success()
        }
        Route::ListWebhooks => {
            let hooks = webhooks::list(deps, caller).await?;
            ok(json!({ "success": true, "result": hooks }))
        }
        Route::GetWebhook => {
            let hook = webhooks::get(deps, caller, &id(request, "webhook_id")?).await?;
            ok(json!({ "success": true, "result": hook }))
        }
        Route::PutWebhook => {
            let webhook_id = id(request, "webhook_id")?;
            let input = webhooks::PutWebhook::from_fields(&fields(request)?)?;
            let (hook, created) = webhooks::put(deps, caller, &webhook_id, input).await?;
            let status = if created { 201 } else { 200 };
            Ok(json_response(
                status,
                &json!({ "success": true, "webhook": hook }),
            ))
        }
        Route::DeleteWebhook => {
            webhooks::delete(deps, caller, &id(request, "webhook_id")?).await?;
            success()
        }
    }
}
