//! `netbird expose` against this server: NetBird's expose calls in our
//! terms, served by the same session table as our daemons' (seed 000's
//! sessions, limits, errors and proxy, [`crate::expose`]).

use meshplane_proto::netbird as nb;
use meshplane_proto::v1;
use tonic::Status;

use crate::expose::{self, Expose};
use crate::store::Store;

/// The protocol names of NetBird's expose protocols; the core decides
/// which it serves (and refuses the others with its message).
fn protocol(p: i32) -> Result<&'static str, Status> {
    match nb::ExposeProtocol::try_from(p) {
        Ok(nb::ExposeProtocol::ExposeHttp) => Ok("http"),
        Ok(nb::ExposeProtocol::ExposeHttps) => Ok("https"),
        Ok(nb::ExposeProtocol::ExposeTcp) => Ok("tcp"),
        Ok(nb::ExposeProtocol::ExposeUdp) => Ok("udp"),
        Ok(nb::ExposeProtocol::ExposeTls) => Ok("tls"),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown expose protocol {p}"
        ))),
    }
}

/// NetBird's request in our terms. NetBird's wire cannot tell an empty PIN
/// or password from none, so empty means none.
fn request(req: nb::ExposeServiceRequest) -> Result<v1::CreateExposeRequest, Status> {
    let given = |s: String| Some(s).filter(|s| !s.is_empty());
    if req.listen_port != 0 {
        return Err(Status::invalid_argument(
            "a listen port is only for TCP and UDP services, which this server does not expose",
        ));
    }
    Ok(v1::CreateExposeRequest {
        port: req.port,
        protocol: protocol(req.protocol)?.to_string(),
        pin: given(req.pin),
        password: given(req.password),
        user_groups: req.user_groups,
        custom_domain: req.domain,
        name_prefix: req.name_prefix,
    })
}

/// CreateExpose for the peer holding `key`.
pub async fn create(
    expose: &Expose,
    store: &Store,
    key: &str,
    req: nb::ExposeServiceRequest,
) -> Result<nb::ExposeServiceResponse, Status> {
    let answer = expose::create(expose, store, key, request(req)?).await?;
    let session = answer
        .session
        .ok_or_else(|| Status::internal("internal error"))?;
    Ok(nb::ExposeServiceResponse {
        service_name: session.name,
        service_url: session.url,
        domain: session.domain,
        port_auto_assigned: false,
    })
}

/// RenewExpose for the peer holding `key`.
pub async fn renew(
    expose: &Expose,
    key: &str,
    req: nb::RenewExposeRequest,
) -> Result<nb::RenewExposeResponse, Status> {
    let req = v1::RenewExposeRequest { domain: req.domain };
    expose::renew(expose, key, req).await?;
    Ok(nb::RenewExposeResponse {})
}

/// StopExpose for the peer holding `key`.
pub async fn stop(
    expose: &Expose,
    key: &str,
    req: nb::StopExposeRequest,
) -> Result<nb::StopExposeResponse, Status> {
    let req = v1::StopExposeRequest { domain: req.domain };
    expose::stop(expose, key, req).await?;
    Ok(nb::StopExposeResponse {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_field_by_field() {
        let req = request(nb::ExposeServiceRequest {
            port: 8080,
            protocol: nb::ExposeProtocol::ExposeHttps.into(),
            pin: String::new(),
            password: "secret".into(),
            user_groups: vec!["g".into()],
            domain: "app.example.com".into(),
            name_prefix: "demo".into(),
            listen_port: 0,
        })
        .unwrap();
        assert_eq!(req.port, 8080);
        assert_eq!(req.protocol, "https");
        assert_eq!(req.pin, None);
        assert_eq!(req.password.as_deref(), Some("secret"));
        assert_eq!(req.user_groups, ["g"]);
        assert_eq!(req.custom_domain, "app.example.com");
        assert_eq!(req.name_prefix, "demo");
        let bad = request(nb::ExposeServiceRequest {
            protocol: 99,
            ..Default::default()
        });
        assert_eq!(bad.unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
