//! What one GraphQL request may cost, checked before anything is resolved.
//!
//! juniper bounds a document's tokens, its nesting and its fields after fragment expansion
//! (see `schema`); it does not know what a field costs. Here a document is priced:
//!
//! - every field counts 1;
//! - a list field multiplies the price of its selection by the number of items it can return:
//!   its `limit` argument (a literal, a variable, the variable's default or the argument's
//!   default, at most the largest page), or [`UNBOUNDED_LIST_ITEMS`] for a list without one
//!   (a drama's characters, episodes, scenes, jobs), except the top-level `jobs(dramaId)`,
//!   every job of a drama, [`ROOT_JOBS_ITEMS`];
//! - introspection (`__schema`, `__type`) counts each field once, lists included: the schema
//!   is small and fixed, and GraphiQL and code generators send the full graphql-js query.
//!
//! A batch is priced as the sum of its operations. Aliases are counted too: one document may
//! otherwise ask the same expensive field hundreds of times under different names.
//!
//! Top-level fields are counted apart, over the whole batch: each one is a resolver that goes
//! to the store (loads whole dramas, plans a generation), whatever the few values it returns,
//! so their number is bounded on its own ([`GraphqlLimits::max_root_fields`]).
//!
//! So is the number of complete dramas the `dramas` fields of a request ask for together
//! ([`super::paging::MAX_REQUEST_DRAMAS`]): each is loaded whole, whatever its selection.

use std::collections::{HashMap, HashSet};

use super::compat::Fragments;
use crate::error::ErrorCode;
pub use crate::state::GraphqlLimits;
use juniper::http::GraphQLRequest;
use juniper::{
    DefaultScalarValue, Definition, InputValue, OperationType, ParseError, SchemaType, Selection,
};

type Schema = SchemaType<DefaultScalarValue>;

/// Items a list field without a `limit` argument is assumed to return.
pub const UNBOUNDED_LIST_ITEMS: u64 = 5;

/// Items the top-level `jobs(dramaId)` is priced for: every node of a drama's newest runs,
/// which hold hundreds of nodes for a drama of a few episodes (the job nodes one request
/// reads are bounded apart, `drama_app::pipeline::MAX_TREE_NODES`).
pub const ROOT_JOBS_ITEMS: u64 = 1_000;

/// A request over one of the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A batch with more operations than allowed.
    #[error("The batch holds {found} operations; at most {limit} are allowed")]
    BatchTooLarge {
        /// Operations sent.
        found: u64,
        /// The limit.
        limit: u64,
    },
    /// An operation with too many aliases.
    #[error("The operation uses {found} aliases; at most {limit} are allowed")]
    TooManyAliases {
        /// Aliases counted.
        found: u64,
        /// The limit.
        limit: u64,
    },
    /// A request whose price is over the budget.
    #[error(
        "The request could return about {found} values; at most {limit} are allowed (lists \
         count by their `limit`); ask for smaller pages or fewer fields"
    )]
    TooComplex {
        /// The price.
        found: u64,
        /// The budget.
        limit: u64,
    },
    /// A document nested too deeply.
    #[error("The document nests deeper than the limit of {limit} levels")]
    TooDeep {
        /// The limit.
        limit: u64,
    },
    /// A request (a batch: all its operations) with too many top-level fields.
    #[error(
        "The request asks for {found} top-level fields; at most {limit} are allowed (aliases \
         and the operations of a batch count); send fewer, or in more requests"
    )]
    TooManyRootFields {
        /// Top-level fields counted.
        found: u64,
        /// The limit.
        limit: u64,
    },
    /// A request (a batch: all its operations) whose `dramas` fields ask for too many
    /// complete dramas together.
    #[error(
        "The request asks for {found} complete dramas over its `dramas` fields; at most \
         {limit} are allowed together; ask for fewer, or in more requests"
    )]
    TooManyDramas {
        /// Complete dramas asked for (each field's `limit`, at most what one field serves).
        found: u64,
        /// The limit.
        limit: u64,
    },
}

impl LimitError {
    /// The row of the error table naming this limit in REST envelopes and GraphQL
    /// `extensions`.
    pub fn kind(&self) -> ErrorCode {
        match self {
            Self::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
            Self::TooManyAliases { .. } => ErrorCode::TooManyAliases,
            Self::TooComplex { .. }
            | Self::TooManyRootFields { .. }
            | Self::TooManyDramas { .. } => ErrorCode::QueryTooComplex,
            Self::TooDeep { .. } => ErrorCode::QueryTooDeep,
        }
    }

    /// The limit that was hit.
    pub fn limit(&self) -> u64 {
        match self {
            Self::BatchTooLarge { limit, .. }
            | Self::TooManyAliases { limit, .. }
            | Self::TooComplex { limit, .. }
            | Self::TooManyRootFields { limit, .. }
            | Self::TooManyDramas { limit, .. }
            | Self::TooDeep { limit } => *limit,
        }
    }

    /// What the request asked for, when it was counted to the end.
    pub fn found(&self) -> Option<u64> {
        match self {
            Self::BatchTooLarge { found, .. }
            | Self::TooManyAliases { found, .. }
            | Self::TooComplex { found, .. }
            | Self::TooManyRootFields { found, .. }
            | Self::TooManyDramas { found, .. } => Some(*found),
            Self::TooDeep { .. } => None,
        }
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Checks the operations of one request (a batch or a single one) against `limits`.
///
/// # Errors
/// The first limit the request is over. A document that does not parse for any other reason
/// passes, for juniper to report as it always has.
pub fn check(
    schema: &Schema,
    requests: &[&GraphQLRequest],
    limits: &GraphqlLimits,
) -> Result<(), LimitError> {
    if requests.len() > limits.max_batch {
        return Err(LimitError::BatchTooLarge {
            found: count(requests.len()),
            limit: count(limits.max_batch),
        });
    }
    let mut total = Price::default();
    for request in requests {
        let one = price(schema, request, limits)?;
        total.values = total.values.saturating_add(one.values);
        total.root_fields = total.root_fields.saturating_add(one.root_fields);
        total.dramas = total.dramas.saturating_add(one.dramas);
        if total.values > limits.max_complexity {
            return Err(LimitError::TooComplex {
                found: total.values,
                limit: limits.max_complexity,
            });
        }
        if total.root_fields > count(limits.max_root_fields) {
            return Err(LimitError::TooManyRootFields {
                found: total.root_fields,
                limit: count(limits.max_root_fields),
            });
        }
        if total.dramas > super::paging::MAX_REQUEST_DRAMAS {
            return Err(LimitError::TooManyDramas {
                found: total.dramas,
                limit: super::paging::MAX_REQUEST_DRAMAS,
            });
        }
    }
    Ok(())
}

/// What one operation costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    /// Values it can return (lists by their `limit`).
    pub values: u64,
    /// Fields at its top level (introspection's `__schema`, `__type` and `__typename` aside),
    /// fragments expanded.
    pub root_fields: u64,
    /// Complete dramas its top-level `dramas` fields ask for.
    pub dramas: u64,
}

/// The price of one request: of the operation it runs (of the dearest, when it names none
/// that exists, as juniper will then refuse it anyway).
///
/// # Errors
/// A limit other than the totals: depth or aliases.
pub fn price(
    schema: &Schema,
    request: &GraphQLRequest,
    limits: &GraphqlLimits,
) -> Result<Price, LimitError> {
    let document = match juniper::parser::parse_document_source(&request.query, schema) {
        Ok(document) => document,
        Err(e) => {
            return match e.item {
                ParseError::DepthLimitExceeded(limit) => Err(LimitError::TooDeep {
                    limit: count(limit),
                }),
                // Fields and tokens beyond juniper's bounds: the document is too big to price.
                ParseError::FieldLimitExceeded(_) | ParseError::TokenLimitExceeded(_) => {
                    Err(LimitError::TooComplex {
                        found: limits.max_complexity.saturating_add(1),
                        limit: limits.max_complexity,
                    })
                }
                _ => Ok(Price::default()),
            };
        }
    };
    let fragments = super::compat::fragments(&document);
    let mut dearest = Price::default();
    for definition in &document {
        let Definition::Operation(op) = definition else {
            continue;
        };
        let named = op.item.name.as_ref().map(|n| n.item);
        if let (Some(wanted), Some(name)) = (&request.operation_name, named)
            && wanted != name
        {
            continue;
        }
        let root = match op.item.operation_type {
            OperationType::Query => Some(schema.concrete_query_type()),
            OperationType::Mutation => schema.concrete_mutation_type(),
            OperationType::Subscription => schema.concrete_subscription_type(),
        };
        let mut defaults = HashMap::new();
        if let Some(defs) = &op.item.variables_definition {
            for (name, def) in &defs.item.items {
                if let Some(default) = &def.default_value {
                    defaults.insert(name.item, &default.item);
                }
            }
        }
        let mut pricer = Pricer {
            schema,
            fragments: &fragments,
            variables: request.variables.as_ref(),
            defaults,
            open: HashSet::new(),
            aliases: 0,
            depth: 0,
            root_fields: 0,
            dramas: 0,
        };
        let parent: Option<&str> = root.and_then(|t| t.name()).map(|n| &**n);
        let cost = pricer.selections(parent, &op.item.selection_set, false);
        if pricer.aliases > count(limits.max_aliases) {
            return Err(LimitError::TooManyAliases {
                found: pricer.aliases,
                limit: count(limits.max_aliases),
            });
        }
        dearest = Price {
            values: dearest.values.max(cost),
            root_fields: dearest.root_fields.max(pricer.root_fields),
            dramas: dearest.dramas.max(pricer.dramas),
        };
    }
    Ok(dearest)
}

/// What pricing needs of a field of the document.
struct Shape<'d, 'a> {
    aliased: bool,
    name: &'a str,
    limit: Option<&'d InputValue<DefaultScalarValue>>,
    children: Option<&'d [Selection<'a, DefaultScalarValue>]>,
}

struct Pricer<'s, 'f, 'd, 'a> {
    schema: &'s Schema,
    fragments: &'f Fragments<'d, 'a>,
    variables: Option<&'f InputValue<DefaultScalarValue>>,
    defaults: HashMap<&'a str, &'d InputValue<DefaultScalarValue>>,
    /// Fragments being expanded (a cycle is juniper's to refuse; here it stops the walk).
    open: HashSet<&'a str>,
    aliases: u64,
    /// Fields entered above the one being priced (0: a top-level field).
    depth: u32,
    root_fields: u64,
    dramas: u64,
}

impl<'a> Pricer<'_, '_, '_, 'a> {
    /// The price of `selections` on the type `parent` (None: unknown, priced field by field).
    fn selections(
        &mut self,
        parent: Option<&str>,
        selections: &[Selection<'a, DefaultScalarValue>],
        introspection: bool,
    ) -> u64 {
        let mut total: u64 = 0;
        for selection in selections {
            let cost = match selection {
                Selection::Field(field) => {
                    let field = &field.item;
                    let limit = field
                        .arguments
                        .iter()
                        .flat_map(|a| a.item.items.iter())
                        .find(|(name, _)| name.item == "limit")
                        .map(|(_, value)| &value.item);
                    let shape = Shape {
                        aliased: field.alias.is_some(),
                        name: field.name.item,
                        limit,
                        children: field.selection_set.as_deref(),
                    };
                    self.field(parent, &shape, introspection)
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.item.name.item;
                    match self.fragments.get(name) {
                        Some((condition, selections)) if self.open.insert(name) => {
                            let cost = self.selections(Some(condition), selections, introspection);
                            self.open.remove(name);
                            cost
                        }
                        _ => 0,
                    }
                }
                Selection::InlineFragment(inline) => {
                    let parent = inline
                        .item
                        .type_condition
                        .as_ref()
                        .map(|c| c.item)
                        .or(parent);
                    self.selections(parent, &inline.item.selection_set, introspection)
                }
            };
            total = total.saturating_add(cost);
        }
        total
    }

    fn field(&mut self, parent: Option<&str>, field: &Shape<'_, 'a>, introspection: bool) -> u64 {
        if field.aliased {
            self.aliases = self.aliases.saturating_add(1);
        }
        let name = field.name;
        if self.depth == 0 && !name.starts_with("__") {
            self.root_fields = self.root_fields.saturating_add(1);
        }
        let introspection = introspection || name == "__schema" || name == "__type";
        let meta = parent
            .and_then(|p| self.schema.concrete_type_by_name(p))
            .and_then(|t| t.field_by_name(name));
        let Some(children) = field.children else {
            return 1;
        };
        let child_type = meta.map(|m| m.field_type.innermost_name().to_owned());
        self.depth += 1;
        let inner = self.selections(child_type.as_deref(), children, introspection);
        self.depth -= 1;
        let items = match meta {
            Some(meta) if !introspection && is_list(&meta.field_type) => self.items(field, meta),
            _ => 1,
        };
        if self.depth == 0 && name == "dramas" && meta.is_some() {
            self.dramas = self.dramas.saturating_add(items);
        }
        // Priced at most a page: what the field served before it served more, so a document
        // the old server answered (an old client's `dramas(limit: 500)` with its selection)
        // still fits the price. The number of complete dramas is bounded apart (above).
        let priced = items.min(super::paging::priced_page(name));
        inner.saturating_mul(priced).saturating_add(1)
    }

    /// How many items a list field can return.
    fn items(&self, field: &Shape<'_, 'a>, meta: &juniper::meta::Field<DefaultScalarValue>) -> u64 {
        let Some(argument) = meta.arguments.iter().flatten().find(|a| a.name == "limit") else {
            return if self.depth == 0 && field.name == "jobs" {
                ROOT_JOBS_ITEMS
            } else {
                UNBOUNDED_LIST_ITEMS
            };
        };
        let value = match field.limit {
            Some(InputValue::Variable(variable)) => self.variable(variable),
            Some(other) => Some(other),
            None => None,
        }
        .or(argument.default_value.as_ref());
        let largest = u64::from(super::paging::largest_page(field.name).unsigned_abs());
        // A larger value is served as the most the field serves, and priced as it.
        match value {
            Some(InputValue::Scalar(DefaultScalarValue::Int(n))) if *n >= 0 => {
                u64::from(n.unsigned_abs()).min(largest)
            }
            _ => largest,
        }
    }

    /// A variable's value: sent, or its default in the operation.
    fn variable(&self, name: &str) -> Option<&InputValue<DefaultScalarValue>> {
        let sent = match self.variables {
            Some(InputValue::Object(values)) => values
                .iter()
                .find(|(k, _)| k.item == name)
                .map(|(_, v)| &v.item),
            _ => None,
        };
        match sent {
            Some(InputValue::Null) | None => self.defaults.get(name).copied(),
            Some(value) => Some(value),
        }
    }
}

/// Whether a field's type is a list (under any non-null wrappers): a type's modifiers are
/// lists and non-nulls, and two non-nulls never follow each other, so any modifier beyond a
/// topmost non-null is a list.
fn is_list(t: &juniper::Type) -> bool {
    t.modifiers().len() > usize::from(t.is_non_null())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str, variables: serde_json::Value) -> GraphQLRequest {
        serde_json::from_value(serde_json::json!({"query": query, "variables": variables})).unwrap()
    }

    fn priced(query: &str, variables: serde_json::Value) -> Result<u64, LimitError> {
        let schema = super::super::schema();
        price(
            &schema.schema,
            &request(query, variables),
            &GraphqlLimits::default(),
        )
        .map(|p| p.values)
    }

    #[test]
    fn lists_weigh_by_their_limit() {
        assert_eq!(
            priced("{ dramas(limit: 10) { id title } }", serde_json::json!({})),
            Ok(21)
        );
        assert_eq!(
            priced(
                "query($n: Int) { dramas(limit: $n) { id } }",
                serde_json::json!({"n": 3})
            ),
            Ok(4)
        );
        // Absent: the variable's default, then the argument's.
        assert_eq!(
            priced(
                "query($n: Int = 7) { dramas(limit: $n) { id } }",
                serde_json::json!({})
            ),
            Ok(8)
        );
        assert_eq!(priced("{ dramas { id } }", serde_json::json!({})), Ok(101));
        // Above a page: priced as a page (100 dramas, 1,000 summaries), as before these
        // fields served more than a page.
        assert_eq!(
            priced("{ dramas(limit: 5000) { id } }", serde_json::json!({})),
            Ok(101)
        );
        assert_eq!(
            priced("{ dramas(limit: 500) { id } }", serde_json::json!({})),
            Ok(101)
        );
        assert_eq!(
            priced(
                "{ dramaSummaries(limit: 9000) { id } }",
                serde_json::json!({})
            ),
            Ok(1001)
        );
        // The documented page of complete dramas, asked for as an old client does.
        assert_eq!(
            priced(
                "{ dramas(limit: 500) { episodes { scenes { jobs { jobId status createdAt } } } } }",
                serde_json::json!({})
            ),
            Ok(40_601)
        );
        // A list without `limit`: UNBOUNDED_LIST_ITEMS.
        assert_eq!(
            priced(
                r#"{ drama(id: "x") { characters { name } } }"#,
                serde_json::json!({})
            ),
            Ok(1 + 1 + UNBOUNDED_LIST_ITEMS)
        );
        // Fragments are priced where they are spread.
        assert_eq!(
            priced(
                "fragment F on Drama { id title } { dramas(limit: 2) { ...F } }",
                serde_json::json!({})
            ),
            Ok(5)
        );
    }

    #[test]
    fn the_top_level_jobs_of_a_drama_are_priced_as_its_runs_nodes() {
        assert_eq!(
            priced(
                r#"{ jobs(dramaId: "x") { jobId status } }"#,
                serde_json::json!({})
            ),
            Ok(2 * ROOT_JOBS_ITEMS + 1)
        );
        // A drama's nested `jobs` stay a short list: the request's job nodes bound them.
        assert_eq!(
            priced(
                r#"{ drama(id: "x") { jobs { jobId } } }"#,
                serde_json::json!({})
            ),
            Ok(1 + 1 + UNBOUNDED_LIST_ITEMS)
        );
        // Aliased, the documented selection of 30 fields is over the price.
        let aliased: Vec<String> = (0..30)
            .map(|i| format!(r#"j{i}: jobs(dramaId: "d{i}") {{ jobId status createdAt key }}"#))
            .collect();
        let price = priced(
            &format!("{{ {} }}", aliased.join(" ")),
            serde_json::json!({}),
        );
        assert!(
            price
                .clone()
                .is_ok_and(|p| p > GraphqlLimits::default().max_complexity),
            "{price:?}"
        );
    }

    #[test]
    fn aliases_are_counted() {
        let query = format!(
            "{{ {} }}",
            (0..31)
                .map(|i| format!("a{i}: dramaSummaries(limit: 1) {{ id }}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(
            priced(&query, serde_json::json!({})),
            Err(LimitError::TooManyAliases {
                found: 31,
                limit: 30
            })
        );
    }

    #[test]
    fn only_the_named_operation_is_priced() {
        let query =
            "query Small { dramas(limit: 1) { id } } query Big { dramas(limit: 100) { id } }";
        let schema = super::super::schema();
        let mut small = request(query, serde_json::json!({}));
        small.operation_name = Some("Small".to_owned());
        assert_eq!(
            price(&schema.schema, &small, &GraphqlLimits::default()).map(|p| p.values),
            Ok(2)
        );
    }

    #[test]
    fn complete_dramas_are_counted_over_the_batch() {
        let schema = super::super::schema();
        let limits = GraphqlLimits::default();
        let pages = |n: usize, limit: u32| {
            let fields: Vec<String> = (0..n)
                .map(|i| format!("d{i}: dramas(limit: {limit}) {{ id }}"))
                .collect();
            request(
                &format!("{{ {} }}", fields.join(" ")),
                serde_json::json!({}),
            )
        };
        // As many as 30 pages of 100 came to; a `limit` above 500 counts as 500.
        let six = pages(6, 9000);
        assert_eq!(
            price(&schema.schema, &six, &limits).map(|p| p.dramas),
            Ok(3000)
        );
        assert_eq!(check(&schema.schema, &[&six], &limits), Ok(()));
        let one = pages(1, 1);
        assert_eq!(
            check(&schema.schema, &[&six, &one], &limits),
            Err(LimitError::TooManyDramas {
                found: 3001,
                limit: 3000
            })
        );
        // Summaries are rows, not whole dramas; `drama(id)` is one.
        let summaries = request(
            "{ a: dramaSummaries(limit: 5000) { id } b: drama(id: \"x\") { id } }",
            serde_json::json!({}),
        );
        assert_eq!(
            price(&schema.schema, &summaries, &limits).map(|p| p.dramas),
            Ok(0)
        );
    }

    #[test]
    fn top_level_fields_are_counted_over_the_batch() {
        let schema = super::super::schema();
        let limits = GraphqlLimits::default();
        let estimates = |n: usize| {
            let fields: Vec<String> = (0..n)
                .map(|i| format!(r#"e{i}: estimate(dramaId: "big") {{ cost }}"#))
                .collect();
            request(
                &format!("{{ {} }}", fields.join(" ")),
                serde_json::json!({}),
            )
        };
        // Fragments at the top count their fields; introspection's do not.
        let spread = request(
            "fragment Q on Query { a: dramas(limit: 1) { id } b: drama(id: \"x\") { id } } \
             { ...Q __typename __schema { queryType { name } } }",
            serde_json::json!({}),
        );
        assert_eq!(
            price(&schema.schema, &spread, &limits).map(|p| p.root_fields),
            Ok(2)
        );
        let ten = estimates(10);
        assert_eq!(check(&schema.schema, &[&ten, &ten, &ten], &limits), Ok(()));
        let three = estimates(3);
        let batch: Vec<&GraphQLRequest> = vec![&ten, &ten, &ten, &three];
        assert_eq!(
            check(&schema.schema, &batch, &limits),
            Err(LimitError::TooManyRootFields {
                found: 33,
                limit: 30
            })
        );
    }
}
