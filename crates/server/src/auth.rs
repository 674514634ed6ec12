//! Authentication (bearer API tokens) and per-route permissions. Every route is added through
//! [`Routes::add`] with its [`Access`]; the same list drives the router and the permission-matrix
//! test, so a route cannot exist without a declared permission.

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use telechart_policy::{Permission, Role};

use crate::{ApiError, AppState};

/// Who is calling: resolved from the bearer token, carried in request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: String,
    /// For the audit log: `token:{id}` (later also `user:{id}`).
    pub actor: String,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Liveness only: no data.
    Public,
    /// Endpoints that authenticate the caller themselves: login, signed events, the patient
    /// portal (its own link and session).
    SignIn,
    Requires(Permission),
}

/// A logged-in person's session, whether or not a second factor is still owed.
#[derive(Debug, Clone)]
pub struct SessionCaller {
    pub session: telechart_store::SessionRow,
    pub secret: String,
}

/// Marks a request whose session still owes a second factor.
#[derive(Debug, Clone, Copy)]
struct MfaPending;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

pub(crate) struct Routes {
    router: Router<AppState>,
    specs: Vec<RouteSpec>,
}

impl Routes {
    pub fn new() -> Self {
        Routes { router: Router::new(), specs: Vec::new() }
    }

    pub fn add<H, T>(mut self, method: Method, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
        let route = on(filter, handler).route_layer(from_fn_with_state(access, guard));
        self.router = self.router.route(path, route);
        self.specs.push(RouteSpec { method, path, access });
        self
    }

    /// As [`Routes::add`], for a route whose bodies may be larger than the 2 MiB default.
    pub fn add_large<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        max_body_bytes: usize,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
        let route = on(filter, handler)
            .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
            .route_layer(from_fn_with_state(access, guard));
        self.router = self.router.route(path, route);
        self.specs.push(RouteSpec { method, path, access });
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.specs.extend(other.specs);
        self
    }

    pub fn into_parts(self) -> (Router<AppState>, Vec<RouteSpec>) {
        (self.router, self.specs)
    }
}

async fn guard(State(access): State<Access>, request: Request, next: Next) -> Response {
    let Access::Requires(permission) = access else {
        return next.run(request).await;
    };
    match request.extensions().get::<Caller>() {
        None if request.extensions().get::<MfaPending>().is_some() => ApiError::MfaRequired.into_response(),
        None => unauthorized(),
        Some(caller) if caller.role.allows(permission) => next.run(request).await,
        Some(caller) => {
            ApiError::Forbidden(format!("role {} lacks permission {permission}", caller.role)).into_response()
        }
    }
}

fn unauthorized() -> Response {
    let mut response = ApiError::Unauthorized.into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"telechart\""));
    response
}

/// Resolves `Authorization: Bearer …` into a [`Caller`]. A presented but invalid token is a 401
/// here and now (it never falls through as anonymous); no detail says why.
pub(crate) async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return authenticate_session(state, request, next).await;
    };
    let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim) else {
        return unauthorized();
    };
    let row = match state.store.authenticate_api_token(token).await {
        Ok(Some(row)) => row,
        Ok(None) => return unauthorized(),
        Err(e) => return ApiError::Internal(e.to_string()).into_response(),
    };
    let Ok(role) = row.role.parse::<Role>() else {
        return unauthorized();
    };
    request.extensions_mut().insert(Caller { tenant_id: row.tenant_id, actor: format!("token:{}", row.id), role });
    next.run(request).await
}

/// Resolves the session cookie: a [`SessionCaller`] always, a [`Caller`] once any second factor
/// the role needs is proven. State-changing requests must echo the session's CSRF token.
async fn authenticate_session(state: AppState, mut request: Request, next: Next) -> Response {
    let Some(secret) = crate::login::cookie_secret(request.headers()) else {
        return next.run(request).await;
    };
    let session = match state.store.session(&secret, state.sessions.limits, state.clock.now_ms()).await {
        Ok(Some(s)) => s,
        // An ended or expired session is no session: the request goes on anonymous, so sign-in
        // routes (a new launch, a new login) work and every protected route still answers 401.
        Ok(None) => return next.run(request).await,
        Err(e) => return ApiError::Internal(e.to_string()).into_response(),
    };
    let safe = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let mut presented =
            request.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        // An HTML form cannot set headers: its token comes as the `csrf_token` field, read from
        // a bounded copy of the body that is then handed on unchanged.
        let is_form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if presented.is_empty() && is_form {
            let (parts, body) = request.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
                return ApiError::invalid("body", "the form is too large").into_response();
            };
            presented = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                .ok()
                .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "csrf_token").map(|(_, v)| v))
                .unwrap_or_default();
            request = Request::from_parts(parts, axum::body::Body::from(bytes));
        }
        let matches =
            aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), session.csrf_token.as_bytes())
                .is_ok();
        if !matches {
            return ApiError::Forbidden("the X-CSRF-Token header is missing or wrong".to_owned()).into_response();
        }
    }
    let Ok(role) = session.role.parse::<Role>() else {
        return unauthorized();
    };
    if state.sessions.requires_mfa(role) && session.mfa != 1 {
        request.extensions_mut().insert(MfaPending);
    } else {
        request.extensions_mut().insert(Caller {
            tenant_id: session.tenant_id.clone(),
            actor: format!("user:{}", session.user_id),
            role,
        });
    }
    request.extensions_mut().insert(SessionCaller { session, secret });
    next.run(request).await
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for SessionCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<SessionCaller>().cloned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<SessionCaller>().cloned().ok_or_else(unauthorized)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(unauthorized)
    }
}
