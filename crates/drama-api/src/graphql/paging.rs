//! Pages of GraphQL list fields and the filters old clients send: how large a page a `limit`
//! asks for, and what a `status` filter means.

use juniper::FieldResult;

use super::error::bad_input;

/// Largest page of complete dramas (`dramas`).
pub(crate) const MAX_LIMIT: i32 = 100;
/// Largest page of summaries (`dramaSummaries`): one row each, as REST's `GET /dramas`.
pub(crate) const MAX_SUMMARY_LIMIT: i32 = 1_000;

/// The largest page the list field `name` returns, which is also what its `limit` prices.
pub(crate) fn largest_page(name: &str) -> i32 {
    if name == "dramaSummaries" {
        MAX_SUMMARY_LIMIT
    } else {
        MAX_LIMIT
    }
}

/// The page a `limit` asks for. The old server's lists had no upper bound, so a larger
/// `limit` is served as the largest page rather than refused (its clients send 500 and
/// expect their dramas), and `0` is an empty page (`None`), as it was; only a negative
/// `limit` is an error.
pub(super) fn page_limit(limit: i32, largest: i32) -> FieldResult<Option<u32>> {
    if limit < 0 {
        return Err(bad_input(format!(
            "limit must not be negative, got {limit}"
        )));
    }
    Ok((limit > 0).then(|| limit.min(largest).unsigned_abs()))
}

/// The wire status a `jobs(status:)` filter asks for. The old server's job tables named a
/// running job `running` (its DAG storage) as well as `processing` (the wire); an old client
/// filtering with either finds it.
pub(super) fn status_filter(status: String) -> String {
    if status == "running" {
        drama_domain::JobStatus::Processing.as_str().to_owned()
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_larger_limit_is_the_largest_page_and_zero_is_empty() {
        assert_eq!(page_limit(5000, MAX_LIMIT).unwrap(), Some(100));
        assert_eq!(page_limit(5000, MAX_SUMMARY_LIMIT).unwrap(), Some(1000));
        assert_eq!(page_limit(7, MAX_LIMIT).unwrap(), Some(7));
        assert_eq!(page_limit(0, MAX_LIMIT).unwrap(), None);
        assert!(page_limit(-1, MAX_LIMIT).is_err());
        assert_eq!(largest_page("dramaSummaries"), MAX_SUMMARY_LIMIT);
        assert_eq!(largest_page("dramas"), MAX_LIMIT);
    }

    #[test]
    fn the_old_running_status_filters_as_processing() {
        assert_eq!(status_filter("running".into()), "processing");
        assert_eq!(status_filter("failed".into()), "failed");
    }
}
