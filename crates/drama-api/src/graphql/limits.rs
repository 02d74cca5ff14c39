//! What one GraphQL request may cost, checked before anything is resolved.
//!
//! juniper bounds a document's tokens, its nesting and its fields after fragment expansion
//! (see `schema`); it does not know what a field costs. Here a document is priced:
//!
//! - every field counts 1;
//! - a list field multiplies the price of its selection by the number of items it can return:
//!   its `limit` argument (a literal, a variable, the variable's default or the argument's
//!   default, at most the largest page), or [`UNBOUNDED_LIST_ITEMS`] for a list without one
//!   (a drama's characters, episodes, scenes, jobs);
//! - introspection (`__schema`, `__type`) counts each field once, lists included: the schema
//!   is small and fixed, and GraphiQL and code generators send the full graphql-js query.
//!
//! A batch is priced as the sum of its operations. Aliases are counted too: one document may
//! otherwise ask the same expensive field hundreds of times under different names.

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
}

impl LimitError {
    /// The row of the error table naming this limit in REST envelopes and GraphQL
    /// `extensions`.
    pub fn kind(&self) -> ErrorCode {
        match self {
            Self::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
            Self::TooManyAliases { .. } => ErrorCode::TooManyAliases,
            Self::TooComplex { .. } => ErrorCode::QueryTooComplex,
            Self::TooDeep { .. } => ErrorCode::QueryTooDeep,
        }
    }

    /// The limit that was hit.
    pub fn limit(&self) -> u64 {
        match self {
            Self::BatchTooLarge { limit, .. }
            | Self::TooManyAliases { limit, .. }
            | Self::TooComplex { limit, .. }
            | Self::TooDeep { limit } => *limit,
        }
    }

    /// What the request asked for, when it was counted to the end.
    pub fn found(&self) -> Option<u64> {
        match self {
            Self::BatchTooLarge { found, .. }
            | Self::TooManyAliases { found, .. }
            | Self::TooComplex { found, .. } => Some(*found),
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
    let mut total: u64 = 0;
    for request in requests {
        total = total.saturating_add(price(schema, request, limits)?);
        if total > limits.max_complexity {
            return Err(LimitError::TooComplex {
                found: total,
                limit: limits.max_complexity,
            });
        }
    }
    Ok(())
}

/// The price of one request: of the operation it runs (of the dearest, when it names none
/// that exists, as juniper will then refuse it anyway).
///
/// # Errors
/// A limit other than the total budget: depth or aliases.
pub fn price(
    schema: &Schema,
    request: &GraphQLRequest,
    limits: &GraphqlLimits,
) -> Result<u64, LimitError> {
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
                _ => Ok(0),
            };
        }
    };
    let fragments = super::compat::fragments(&document);
    let mut dearest = 0;
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
        };
        let parent: Option<&str> = root.and_then(|t| t.name()).map(|n| &**n);
        let cost = pricer.selections(parent, &op.item.selection_set, false);
        if pricer.aliases > count(limits.max_aliases) {
            return Err(LimitError::TooManyAliases {
                found: pricer.aliases,
                limit: count(limits.max_aliases),
            });
        }
        dearest = dearest.max(cost);
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
        let introspection = introspection || name == "__schema" || name == "__type";
        let meta = parent
            .and_then(|p| self.schema.concrete_type_by_name(p))
            .and_then(|t| t.field_by_name(name));
        let Some(children) = field.children else {
            return 1;
        };
        let child_type = meta.map(|m| m.field_type.innermost_name().to_owned());
        let inner = self.selections(child_type.as_deref(), children, introspection);
        let items = match meta {
            Some(meta) if !introspection && is_list(&meta.field_type) => self.items(field, meta),
            _ => 1,
        };
        inner.saturating_mul(items).saturating_add(1)
    }

    /// How many items a list field can return.
    fn items(&self, field: &Shape<'_, 'a>, meta: &juniper::meta::Field<DefaultScalarValue>) -> u64 {
        let Some(argument) = meta.arguments.iter().flatten().find(|a| a.name == "limit") else {
            return UNBOUNDED_LIST_ITEMS;
        };
        let value = match field.limit {
            Some(InputValue::Variable(variable)) => self.variable(variable),
            Some(other) => Some(other),
            None => None,
        }
        .or(argument.default_value.as_ref());
        let largest = u64::from(super::paging::largest_page(field.name).unsigned_abs());
        // A larger value is served as the largest page, and priced as it.
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
        // Above the largest page: served and priced as the largest page of that field.
        assert_eq!(
            priced("{ dramas(limit: 5000) { id } }", serde_json::json!({})),
            Ok(101)
        );
        assert_eq!(
            priced(
                "{ dramaSummaries(limit: 5000) { id } }",
                serde_json::json!({})
            ),
            Ok(1001)
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
            price(&schema.schema, &small, &GraphqlLimits::default()),
            Ok(2)
        );
    }
}
