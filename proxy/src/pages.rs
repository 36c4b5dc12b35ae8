//! The small HTML pages the proxy answers with itself.

use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};

use crate::body::{full, ProxyBody};
use crate::ratelimit::Refusal;

/// Whether and how the login page offers single sign-on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SsoOffer {
    /// The service has no user groups.
    None,
    /// The service has user groups and this proxy has an identity provider.
    Available,
    /// The service has user groups but this proxy has no identity provider.
    NotConfigured,
}

/// What the login page shows.
#[derive(Debug)]
pub(crate) struct LoginPage<'a> {
    pub domain: &'a str,
    pub pin: bool,
    pub password: bool,
    pub sso: SsoOffer,
    /// Where to send the visitor after logging in (a validated local path).
    pub return_to: &'a str,
    pub error: Option<&'a str>,
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}}\
         form{{margin:1rem 0}}input,button{{font-size:1rem;padding:.4rem}}\
         .error{{color:#b00020}}</style></head>\n<body>\n{body}\n</body></html>\n",
        title = escape(title),
    )
}

/// A page response with `status`; never cached, since what it says depends
/// on the live service table and the visitor's session.
pub(crate) fn page(status: StatusCode, title: &str, body_html: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(document(title, body_html)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A short page with a heading and one line.
fn notice(status: StatusCode, title: &str, line: &str) -> Response<ProxyBody> {
    page(
        status,
        title,
        &format!("<h1>{}</h1>\n<p>{}</p>", escape(title), escape(line)),
    )
}

pub(crate) fn not_found(host: &str) -> Response<ProxyBody> {
    notice(
        StatusCode::NOT_FOUND,
        "Not found",
        &format!("No service is exposed at {host}"),
    )
}

pub(crate) fn bad_gateway(domain: &str) -> Response<ProxyBody> {
    notice(
        StatusCode::BAD_GATEWAY,
        "Bad gateway",
        &format!("The service behind {domain} cannot be reached right now."),
    )
}

/// A 400 that also closes the connection: a client that sent a broken
/// request cannot be trusted to frame the next one.
pub(crate) fn bad_request(reason: &str) -> Response<ProxyBody> {
    let mut response = notice(StatusCode::BAD_REQUEST, "Bad request", reason);
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

pub(crate) fn forbidden(line: &str) -> Response<ProxyBody> {
    notice(StatusCode::FORBIDDEN, "Access denied", line)
}

/// `429` with `Retry-After`: a login attempt refused without checking it.
pub(crate) fn too_many_attempts(refusal: Refusal) -> Response<ProxyBody> {
    let mut response = notice(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        &refusal.to_string(),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(refusal.retry_after()));
    response
}

/// The login page, status 401, offering each enabled method.
pub(crate) fn login(p: &LoginPage<'_>) -> Response<ProxyBody> {
    let domain = escape(p.domain);
    let rd = escape(p.return_to);
    let mut body = format!("<h1>{domain}</h1>\n<p>This service is protected.</p>\n");
    if let Some(error) = p.error {
        body.push_str(&format!("<p class=\"error\">{}</p>\n", escape(error)));
    }
    let mut form = |method: &str, label: &str, input: &str| {
        body.push_str(&format!(
            "<form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"method\" value=\"{method}\">\
             <input type=\"hidden\" name=\"rd\" value=\"{rd}\">\
             <label>{label} {input}</label> <button type=\"submit\">Continue</button></form>\n",
            action = crate::login::LOGIN_PATH,
        ));
    };
    if p.pin {
        form(
            "pin",
            "PIN",
            "<input name=\"secret\" type=\"password\" inputmode=\"numeric\" \
             autocomplete=\"off\" pattern=\"[0-9]*\" required>",
        );
    }
    if p.password {
        form(
            "password",
            "Password",
            "<input name=\"secret\" type=\"password\" autocomplete=\"current-password\" required>",
        );
    }
    match p.sso {
        SsoOffer::None => {}
        SsoOffer::Available => body.push_str(&format!(
            "<p><a href=\"{path}?{query}\">Sign in with SSO</a></p>\n",
            path = crate::oidc::START_PATH,
            query = escape(&serde_urlencoded::to_string([("rd", p.return_to)]).unwrap_or_default()),
        )),
        SsoOffer::NotConfigured => body.push_str(
            "<p>Single sign-on is required by this service for its user groups, \
             but SSO is not configured on this proxy.</p>\n",
        ),
    }
    page(StatusCode::UNAUTHORIZED, p.domain, &body)
}
