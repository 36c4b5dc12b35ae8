//! `/api/locations/countries` and `/api/locations/countries/{country}/cities`:
//! the countries and cities geo-location posture checks can name, from the
//! GeoNames-derived data in `server/locations/` (cities of 15,000 or more
//! inhabitants; see its LICENSE.md), built into the binary and read once.

use std::sync::OnceLock;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use meshplane_core::locations::{City, LocationError, Locations};

use super::auth::Caller;
use super::failure::{Failure, Ids};
use super::App;

const COUNTRIES: &str = include_str!("../../locations/countries.tsv");
const CITIES: &str = include_str!("../../locations/cities.tsv");

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/locations/countries", get(countries))
        .route("/api/locations/countries/{country}/cities", get(cities))
}

/// The data, read at the first request.
fn locations() -> Result<&'static Locations, Failure> {
    static DATA: OnceLock<Result<Locations, LocationError>> = OnceLock::new();
    DATA.get_or_init(|| Locations::parse(COUNTRIES, CITIES))
        .as_ref()
        .map_err(|e| {
            tracing::error!(error = %e, "location data unreadable");
            Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        })
}

async fn countries(_caller: Caller) -> Result<Json<Vec<&'static str>>, Failure> {
    Ok(Json(locations()?.country_codes().collect()))
}

async fn cities(
    _caller: Caller,
    Ids(country): Ids<String>,
) -> Result<Json<&'static [City]>, Failure> {
    Ok(Json(locations()?.cities(&country)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_data_reads() {
        let data = Locations::parse(COUNTRIES, CITIES).expect("location data");
        assert!(data.country_codes().count() > 240);
        let berlin = data.cities("DE").expect("Germany");
        assert!(berlin
            .iter()
            .any(|c| c.geoname_id == 2950159 && c.city_name == "Berlin"));
    }
}
