//! Size limits on what the API stores: names, descriptions and lists.
//!
//! Every stored value that a client chooses is bounded, so one request can
//! neither fill the database nor make every later read of the account (and
//! every network map built from it) slow. The limits are generous for real
//! use and are checked on every create and update, before anything is
//! written; a value over a limit is a `too_long` / `too_many` validation
//! error naming the field.

use crate::validate::ValidationError;

/// Longest name (groups, policies, rules, setup keys, tokens, networks,
/// resources, routes, posture checks, peers, users, ...), in characters: the
/// width of the reference's name columns.
pub const MAX_NAME_CHARS: usize = 255;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Longest other free-text value (an address, a claim name, a path, a
/// version string), in characters.
pub const MAX_TEXT_CHARS: usize = 1024;
/// Most rules in one policy.
pub const MAX_RULES: usize = 100;
/// Most ports plus port ranges in one rule.
pub const MAX_PORTS: usize = 256;
/// Most entries in a list of references or values: groups of a rule side,
/// a route, a resource, a setup key or a user; posture checks of a policy;
/// domains, nameservers, locations, ranges and processes.
pub const MAX_ITEMS: usize = 1_000;
/// Most members (peers plus resources) of one group.
pub const MAX_GROUP_MEMBERS: usize = 50_000;

/// Largest REST request body, in bytes: room for the largest legitimate
/// body (a group of [`MAX_GROUP_MEMBERS`] resource references is about
/// 2.3 MB), and a bound on what one request makes the server buffer.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// 422 when `value` is longer than `max` characters.
pub fn text(field: &'static str, value: &str, max: usize) -> Result<(), ValidationError> {
    // Counting bytes first keeps a huge value from being walked char by char.
    if value.len() > max && value.chars().count() > max {
        return Err(ValidationError::TooLong { field, max });
    }
    Ok(())
}

/// A name of at most [`MAX_NAME_CHARS`].
pub fn name(field: &'static str, value: &str) -> Result<(), ValidationError> {
    text(field, value, MAX_NAME_CHARS)
}

/// A description of at most [`MAX_DESCRIPTION_CHARS`].
pub fn description(field: &'static str, value: &str) -> Result<(), ValidationError> {
    text(field, value, MAX_DESCRIPTION_CHARS)
}

/// 422 when a list of `len` entries is longer than `max`.
pub fn count(field: &'static str, len: usize, max: usize) -> Result<(), ValidationError> {
    if len > max {
        return Err(ValidationError::TooMany { field, max });
    }
    Ok(())
}

/// A list of at most [`MAX_ITEMS`] entries.
pub fn items<T>(field: &'static str, list: &[T]) -> Result<(), ValidationError> {
    count(field, list.len(), MAX_ITEMS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn names_count_characters_not_bytes() {
        assert!(name("group name", &"ä".repeat(MAX_NAME_CHARS)).is_ok());
        let e = name("group name", &"a".repeat(MAX_NAME_CHARS + 1)).unwrap_err();
        assert_eq!(e.code(), "too_long");
        assert_eq!(
            e.to_string(),
            "group name is too long: at most 255 characters"
        );
        assert!(description("description", &"d".repeat(1024)).is_ok());
        assert!(description("description", &"d".repeat(1025)).is_err());
    }

    #[test]
    fn lists_are_bounded() {
        assert!(items("sources", &vec![0; MAX_ITEMS]).is_ok());
        let e = items("sources", &vec![0; MAX_ITEMS + 1]).unwrap_err();
        assert_eq!(e.code(), "too_many");
        assert_eq!(e.to_string(), "too many sources: at most 1000");
    }
}
