//! `/api/posture-checks`: conditions a policy's source peers must meet.

use axum::Router;
use meshplane_core::limits;
use meshplane_core::model::{Activity, Checks, Policy, PostureCheck, PostureCheckId};
use meshplane_core::validate::Cidr;
use serde::Deserialize;

use super::auth::Caller;
use super::crud::{self, unique_label, Crud};
use super::failure::Failure;
use super::App;
use crate::store::Tx;

pub fn routes() -> Router<App> {
    crud::routes::<PostureCheck>("/api/posture-checks", "posture_check_id")
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PostureCheckRequest {
    name: String,
    description: Option<String>,
    checks: Checks,
}

/// Bounds the lists and texts of the checks; a version a check names may
/// not be empty (a client that leaves it out sends the zero value).
fn sizes(c: &Checks) -> Result<(), Failure> {
    let version = |v: &str| {
        if v.trim().is_empty() {
            return Err(Failure::invalid("minimum version shouldn't be empty"));
        }
        Ok(limits::text("version", v, limits::MAX_TEXT_CHARS)?)
    };
    if let Some(v) = &c.nb_version_check {
        version(&v.min_version)?;
    }
    if let Some(os) = &c.os_version_check {
        for v in [&os.android, &os.darwin, &os.ios].into_iter().flatten() {
            version(&v.min_version)?;
        }
        for v in [&os.linux, &os.windows].into_iter().flatten() {
            version(&v.min_kernel_version)?;
        }
    }
    if let Some(geo) = &c.geo_location_check {
        limits::items("locations", &geo.locations)?;
        for l in &geo.locations {
            limits::name("city name", &l.city_name)?;
        }
    }
    if let Some(range) = &c.peer_network_range_check {
        limits::items("ranges", &range.ranges)?;
    }
    if let Some(process) = &c.process_check {
        limits::items("processes", &process.processes)?;
        for p in &process.processes {
            for path in [&p.linux_path, &p.mac_path, &p.windows_path] {
                limits::text("process path", path, limits::MAX_TEXT_CHARS)?;
            }
        }
    }
    Ok(())
}

/// Checks a request and builds the posture check it describes.
fn checked(id: PostureCheckId, req: PostureCheckRequest) -> Result<PostureCheck, Failure> {
    let name = req.name.trim();
    if name.is_empty() {
        return Err(Failure::invalid("posture check name shouldn't be empty"));
    }
    limits::name("posture check name", name)?;
    limits::description(
        "posture check description",
        req.description.as_deref().unwrap_or_default(),
    )?;
    sizes(&req.checks)?;
    let c = &req.checks;
    if c.nb_version_check.is_none()
        && c.os_version_check.is_none()
        && c.geo_location_check.is_none()
        && c.peer_network_range_check.is_none()
        && c.process_check.is_none()
    {
        return Err(Failure::invalid("posture checks shouldn't be empty"));
    }
    if let Some(geo) = &c.geo_location_check {
        if geo.locations.is_empty() {
            return Err(Failure::invalid(
                "geo location check must have at least one location",
            ));
        }
        if let Some(bad) = geo.locations.iter().find(|l| {
            l.country_code.len() != 2 || !l.country_code.bytes().all(|b| b.is_ascii_uppercase())
        }) {
            return Err(Failure::invalid(format!(
                "invalid country code \"{}\": must be ISO 3166-1 alpha-2",
                bad.country_code
            )));
        }
    }
    if let Some(range) = &c.peer_network_range_check {
        if range.ranges.is_empty() {
            return Err(Failure::invalid(
                "peer network range check must have at least one range",
            ));
        }
        for r in &range.ranges {
            r.parse::<Cidr>()?;
        }
    }
    if let Some(process) = &c.process_check {
        let empty = |p: &meshplane_core::model::Process| {
            p.linux_path.is_empty() && p.mac_path.is_empty() && p.windows_path.is_empty()
        };
        if process.processes.is_empty() || process.processes.iter().any(empty) {
            return Err(Failure::invalid(
                "process check must name at least one path per process",
            ));
        }
    }
    Ok(PostureCheck {
        id,
        name: name.to_string(),
        description: req.description.unwrap_or_default(),
        checks: req.checks,
    })
}

impl Crud for PostureCheck {
    type Request = PostureCheckRequest;
    type Scope = ();
    type Context = ();

    const CREATED: Activity = Activity::POSTURE_CHECK_CREATED;
    const UPDATED: Activity = Activity::POSTURE_CHECK_UPDATED;
    const DELETED: Activity = Activity::POSTURE_CHECK_DELETED;

    async fn build(
        tx: &mut Tx,
        caller: &Caller,
        _scope: &(),
        id: String,
        _old: Option<&PostureCheck>,
        req: PostureCheckRequest,
    ) -> Result<PostureCheck, Failure> {
        let check = checked(PostureCheckId::new(id), req)?;
        unique_label(tx, caller.account_id(), &check).await?;
        Ok(check)
    }

    async fn before_delete(&self, tx: &mut Tx, caller: &Caller) -> Result<(), Failure> {
        let policies = tx.list::<Policy>(caller.account_id()).await?;
        match policies
            .iter()
            .find(|p| p.source_posture_checks.contains(&self.id))
        {
            Some(p) => Err(Failure::bad_request(format!(
                "posture checks have been linked to policy: {}",
                p.name
            ))),
            None => Ok(()),
        }
    }
}
