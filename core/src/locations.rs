//! Countries and their cities, for geo-location posture checks: which
//! country codes exist and which cities (GeoNames ids and English names) a
//! country has. The data is tab-separated text the server ships
//! (`server/locations/`); this module reads it and answers lookups.

use std::collections::BTreeMap;

use serde::Serialize;
use thiserror::Error;

use crate::error::{ErrorCode, Kind};

/// Why a location lookup fails.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LocationError {
    #[error("invalid country code \"{0}\": must be an ISO 3166-1 alpha-2 code (two letters)")]
    InvalidCountryCode(String),
    #[error("country {0} not found")]
    UnknownCountry(String),
    #[error("location data line {0} is malformed")]
    BadData(usize),
}

impl ErrorCode for LocationError {
    fn code(&self) -> &'static str {
        match self {
            LocationError::InvalidCountryCode(_) => "invalid_country_code",
            LocationError::UnknownCountry(_) => "country_not_found",
            LocationError::BadData(_) => "bad_location_data",
        }
    }

    fn kind(&self) -> Kind {
        match self {
            LocationError::InvalidCountryCode(_) => Kind::InvalidArgument,
            LocationError::UnknownCountry(_) => Kind::NotFound,
            LocationError::BadData(_) => Kind::Internal,
        }
    }
}

/// A city, in the REST `City` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct City {
    pub geoname_id: u32,
    pub city_name: String,
}

/// Every country (by ISO 3166-1 alpha-2 code) and its cities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    countries: BTreeMap<String, Vec<City>>,
}

/// A country code as a client may write it (`de`, `DE`), upper-cased;
/// anything but two ASCII letters is refused.
pub fn country_code(text: &str) -> Result<String, LocationError> {
    if text.len() == 2 && text.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(text.to_ascii_uppercase())
    } else {
        Err(LocationError::InvalidCountryCode(text.to_string()))
    }
}

impl Locations {
    /// Reads `countries` (lines `code<TAB>English name`; the names are for
    /// people reading the file) and `cities` (lines
    /// `code<TAB>geoname id<TAB>name`, for listed countries).
    pub fn parse(countries: &str, cities: &str) -> Result<Locations, LocationError> {
        let mut out = BTreeMap::new();
        for (n, line) in countries.lines().enumerate() {
            let (code, _name) = line.split_once('\t').ok_or(LocationError::BadData(n + 1))?;
            let code = country_code(code).map_err(|_| LocationError::BadData(n + 1))?;
            out.insert(code, Vec::new());
        }
        for (n, line) in cities.lines().enumerate() {
            let bad = || LocationError::BadData(n + 1);
            let mut fields = line.splitn(3, '\t');
            let (Some(code), Some(id), Some(name)) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad());
            };
            let geoname_id = id.parse().map_err(|_| bad())?;
            let country = out.get_mut(code).ok_or_else(bad)?;
            country.push(City {
                geoname_id,
                city_name: name.to_string(),
            });
        }
        Ok(Locations { countries: out })
    }

    /// Every country code, in order.
    pub fn country_codes(&self) -> impl Iterator<Item = &str> {
        self.countries.keys().map(String::as_str)
    }

    /// The cities of the country `code` (any case).
    pub fn cities(&self, code: &str) -> Result<&[City], LocationError> {
        let code = country_code(code)?;
        self.countries
            .get(&code)
            .map(Vec::as_slice)
            .ok_or(LocationError::UnknownCountry(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTRIES: &str = "DE\tGermany\nFR\tFrance\nAQ\tAntarctica\n";
    const CITIES: &str = "DE\t2950159\tBerlin\nDE\t2867714\tMunich\nFR\t2988507\tParis\n";

    #[test]
    fn lookups_follow_the_data() {
        let l = Locations::parse(COUNTRIES, CITIES).unwrap();
        assert_eq!(l.country_codes().collect::<Vec<_>>(), ["AQ", "DE", "FR"]);
        let de = l.cities("de").unwrap();
        assert_eq!(
            de[0],
            City {
                geoname_id: 2950159,
                city_name: "Berlin".into()
            }
        );
        assert_eq!(de.len(), 2);
        assert_eq!(l.cities("AQ"), Ok(&[][..]));
        assert_eq!(
            l.cities("XX"),
            Err(LocationError::UnknownCountry("XX".into()))
        );
        for bad in ["D", "DEU", "1A", "", "É"] {
            assert_eq!(
                l.cities(bad),
                Err(LocationError::InvalidCountryCode(bad.into()))
            );
        }
    }

    #[test]
    fn malformed_data_is_reported_by_line() {
        assert_eq!(
            Locations::parse("DE Germany\n", ""),
            Err(LocationError::BadData(1))
        );
        assert_eq!(
            Locations::parse(COUNTRIES, "DE\t1\tA\nXX\t2\tB\n"),
            Err(LocationError::BadData(2))
        );
        assert_eq!(
            Locations::parse(COUNTRIES, "DE\tx\tA\n"),
            Err(LocationError::BadData(1))
        );
        assert_eq!(
            Locations::parse(COUNTRIES, "DE\t1\n"),
            Err(LocationError::BadData(1))
        );
    }
}
