//! Pages of GraphQL list fields and the filters old clients send: how large a page a `limit`
//! asks for, and what a `status` filter means.

use std::future::Future;

use drama_app::store::{Page, PageRequest};
use juniper::FieldResult;

use super::error::bad_input;

/// Complete dramas one statement reads: a page of 100, as REST's overview pages.
pub(crate) const DRAMAS_PAGE: u32 = 100;
/// Most complete dramas one `dramas` field serves, read [`DRAMAS_PAGE`] at a time. The old
/// server's `dramas(limit)` had no upper bound and its clients (which have no `offset`) send
/// `limit: 500` for "all my dramas"; a larger `limit` is served as this many, and the answer
/// says so (`extensions.truncated`).
pub(crate) const MAX_DRAMAS: i32 = 500;
/// Summaries one statement reads: a page of `GET /dramas`.
pub(crate) const SUMMARIES_PAGE: u32 = 1_000;
/// Most summaries one `dramaSummaries` field serves, read [`SUMMARIES_PAGE`] at a time.
pub(crate) const MAX_SUMMARIES: i32 = 5_000;
/// Largest page of the other list fields with a `limit` (`ledger`).
const OTHER_PAGE: i32 = 100;
/// Most complete dramas the `dramas` fields of one request (a batch: all its operations)
/// may ask for together: each is loaded whole whatever the selection, so their number is
/// bounded apart from the price. 3,000 is what the 30 top-level fields of a request could
/// ask for when a field served 100.
pub const MAX_REQUEST_DRAMAS: u64 = 3_000;

/// The most items the list field `name` serves, which is also what its `limit` prices.
pub(crate) fn largest_page(name: &str) -> i32 {
    match name {
        "dramaSummaries" => MAX_SUMMARIES,
        "dramas" => MAX_DRAMAS,
        _ => OTHER_PAGE,
    }
}

/// The most items of the list field `name` its selection is priced for: a page. `dramas` and
/// `dramaSummaries` served a page at most before they served more; pricing them as then
/// keeps the documents old clients send (`dramas(limit: 500)` with their selection) within
/// the price, and [`MAX_REQUEST_DRAMAS`] bounds the complete dramas a request loads.
pub(crate) fn priced_page(name: &str) -> u64 {
    match name {
        "dramaSummaries" => u64::from(SUMMARIES_PAGE),
        "dramas" => u64::from(DRAMAS_PAGE),
        // The others serve no more than they are priced for.
        _ => u64::MAX,
    }
}

/// How many items a `limit` asks for. The old server's lists had no upper bound, so a larger
/// `limit` is served as the largest (`largest`) rather than refused, and `0` is an empty list
/// (`None`), as it was; only a negative `limit` is an error.
pub(super) fn page_limit(limit: i32, largest: i32) -> FieldResult<Option<u32>> {
    if limit < 0 {
        return Err(bad_input(format!(
            "limit must not be negative, got {limit}"
        )));
    }
    Ok((limit > 0).then(|| limit.min(largest).unsigned_abs()))
}

/// Up to `wanted` rows of a list, read in statements of at most `page` rows, each starting
/// after the last row of the one before (the first skips `offset` rows): a drama written
/// meanwhile moves to the front and is neither repeated nor the cause of a skip. Answers the
/// rows and whether more follow them. At most `wanted / page` (rounded up) statements run.
///
/// # Errors
/// The first error of `read`.
pub(super) async fn read_pages<T, E, F, Fut>(
    wanted: u32,
    page: u32,
    offset: u32,
    mut read: F,
) -> Result<(Vec<T>, bool), E>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>, E>>,
{
    let page = page.max(1);
    let mut items: Vec<T> = Vec::new();
    let mut request = PageRequest {
        limit: page.min(wanted),
        after: None,
        offset,
    };
    let mut more = false;
    for _ in 0..wanted.div_ceil(page) {
        let got = read(request).await?;
        items.extend(got.items);
        more = got.next.is_some();
        let read_so_far = u32::try_from(items.len()).unwrap_or(u32::MAX);
        let left = wanted.saturating_sub(read_so_far);
        match got.next {
            Some(cursor) if left > 0 => request = PageRequest::after(page.min(left), cursor),
            _ => break,
        }
    }
    Ok((items, more))
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
    fn a_larger_limit_is_the_most_served_and_zero_is_empty() {
        assert_eq!(page_limit(5000, MAX_DRAMAS).unwrap(), Some(500));
        assert_eq!(page_limit(9000, MAX_SUMMARIES).unwrap(), Some(5000));
        assert_eq!(page_limit(7, MAX_DRAMAS).unwrap(), Some(7));
        assert_eq!(page_limit(0, MAX_DRAMAS).unwrap(), None);
        assert!(page_limit(-1, MAX_DRAMAS).is_err());
        assert_eq!(largest_page("dramaSummaries"), MAX_SUMMARIES);
        assert_eq!(largest_page("dramas"), MAX_DRAMAS);
        assert_eq!(largest_page("ledger"), 100);
    }

    /// A list of `rows` ids, newest first, read as the store reads it: `limit + 1` rows to
    /// know whether more follow, the cursor naming the last row answered.
    fn store(rows: u32) -> impl FnMut(PageRequest) -> std::future::Ready<Result<Page<u32>, ()>> {
        move |request: PageRequest| {
            let start = request
                .after
                .map_or(0, |c| c.id.as_str().parse::<u32>().unwrap() + 1)
                + request.offset;
            let end = (start + request.limit).min(rows);
            let items: Vec<u32> = (start..end).collect();
            let next = (end < rows).then(|| drama_app::store::Cursor {
                updated_at: chrono::DateTime::UNIX_EPOCH,
                id: (end - 1).to_string().parse().unwrap(),
            });
            std::future::ready(Ok(Page { items, next }))
        }
    }

    fn read(wanted: u32, page: u32, offset: u32, rows: u32) -> (Vec<u32>, bool, u32) {
        let mut statements = 0;
        let mut inner = store(rows);
        let (items, more) = futures::executor::block_on(read_pages(wanted, page, offset, |r| {
            statements += 1;
            inner(r)
        }))
        .unwrap();
        (items, more, statements)
    }

    #[test]
    fn pages_are_read_after_one_another_up_to_what_is_wanted() {
        let (items, more, statements) = read(250, 100, 0, 1000);
        assert_eq!(items, (0..250).collect::<Vec<_>>());
        assert_eq!((more, statements), (true, 3));
        // The list ends first.
        let (items, more, statements) = read(500, 100, 0, 120);
        assert_eq!(items, (0..120).collect::<Vec<_>>());
        assert_eq!((more, statements), (false, 2));
        // Exactly what is wanted, and nothing after it.
        let (items, more, statements) = read(200, 100, 0, 200);
        assert_eq!((items.len(), more, statements), (200, false, 2));
        // The offset applies once, to the first statement.
        let (items, more, _) = read(150, 100, 30, 1000);
        assert_eq!(items, (30..180).collect::<Vec<_>>());
        assert!(more);
        // Less than a page: one statement of that size.
        let (items, _, statements) = read(7, 100, 0, 1000);
        assert_eq!((items.len(), statements), (7, 1));
    }

    #[test]
    fn the_old_running_status_filters_as_processing() {
        assert_eq!(status_filter("running".into()), "processing");
        assert_eq!(status_filter("failed".into()), "failed");
    }
}
